"""`dsaecodec encode DIR --ray ADDRESS`: a folder coded by Ray tasks, file for file as the local folder mode codes it.

The options and errors are checked without Ray (a stand-in module replaces it); the last test runs a real local Ray
instance of 2 CPUs and is skipped where Ray is not installed (it is the `ray` extra, not part of `test`).
"""
from __future__ import annotations

import functools
import logging
import re
import sys
import types
from pathlib import Path

import pytest

from helpers import video_folder
from test_cli import assert_one_line_error, run


@pytest.fixture()
def clips(tmp_path) -> Path:
    """A folder of two tiny clips (one in a subfolder) and a broken file."""
    return video_folder(tmp_path / "clips", {"a.mp4": 4, "sub/b.y4m": 2}, width=64, height=64)


def files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (temporary ones included): relative path -> bytes."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def summary(result) -> list[str]:
    """The summary table of a folder run and its count line, the coding times left out."""
    lines = result.stdout.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("file ")):]
    return [re.sub(r", [0-9.]+ s$", "", line) for line in table]


class FakeRay(types.ModuleType):
    """The part of Ray's API that `dsaecodec.cluster` uses, in this process: `init` raises `init_error` if given;
    a task runs when its result is asked for; `wait` raises KeyboardInterrupt (once) after `interrupt_after`
    results were asked for."""

    def __init__(self, init_error: Exception | None = None, interrupt_after: int | None = None):
        super().__init__("ray")
        self.init_error, self.interrupt_after = init_error, interrupt_after
        self.init_options: dict | None = None
        self.connected, self.results_taken, self.cancelled = False, 0, []

    def is_initialized(self) -> bool:
        return self.connected

    def init(self, **options) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.init_options, self.connected = options, True

    def shutdown(self) -> None:
        self.connected = False

    def remote(self, **resources):
        return lambda function: types.SimpleNamespace(remote=functools.partial(functools.partial, function))

    def wait(self, tasks: list, num_returns: int = 1, timeout: float | None = None) -> tuple[list, list]:
        if self.results_taken == self.interrupt_after:
            self.interrupt_after = None
            raise KeyboardInterrupt
        return tasks[:num_returns], tasks[num_returns:]

    def get(self, task):
        self.results_taken += 1
        return task()

    def cancel(self, task) -> None:
        self.cancelled.append(task)


def test_ray_takes_a_folder_and_a_known_kind_of_address(tiny_model, clips):
    assert_one_line_error(run("encode", clips / "a.mp4", "-m", tiny_model, "--ray", "local"), "--ray codes a folder")
    assert_one_line_error(run("encode", clips, "-m", tiny_model, "--ray", "nowhere"),
                          "--ray takes auto, local, HOST:PORT or ray://HOST:PORT")


def test_ray_not_installed_is_one_line(tiny_model, clips, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = run("encode", clips, "-m", tiny_model, "-q", "1", "--ray", "auto")
    assert_one_line_error(result, "--ray needs Ray: pip install -e '.[ray]'")
    assert not clips.with_name("clips-dsae").exists()


def test_a_cluster_that_cannot_be_reached_is_one_line(tiny_model, clips, monkeypatch):
    ray = FakeRay(init_error=ConnectionError("Could not find any running Ray instance.\nPlease specify one."))
    monkeypatch.setitem(sys.modules, "ray", ray)
    result = run("encode", clips, "-m", tiny_model, "-q", "1", "--ray", "10.0.0.1:6379")
    assert_one_line_error(result, "cannot connect to Ray at 10.0.0.1:6379: Could not find any running Ray instance.")
    assert not clips.with_name("clips-dsae").exists()


def test_ray_local_starts_an_instance_of_jobs_cpus_and_codes_as_the_local_mode(tiny_model, clips, tmp_path,
                                                                                monkeypatch):
    local = run("encode", clips, "-o", tmp_path / "here", "-m", tiny_model, "-q", "1")
    ray = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    on_ray = run("encode", clips, "-o", tmp_path / "there", "-m", tiny_model, "-q", "1", "--ray", "local", "-j", "3")
    assert ray.init_options == {"address": "local", "num_cpus": 3, "include_dashboard": False,
                                "logging_level": logging.WARNING}
    assert not ray.connected  # the instance it started is stopped
    assert on_ray.exit_code == local.exit_code == 2 and summary(on_ray) == summary(local)
    assert files(tmp_path / "there") == files(tmp_path / "here")


def test_ctrl_c_cancels_the_outstanding_tasks(tiny_model, clips, tmp_path, monkeypatch):
    ray = FakeRay(interrupt_after=1)
    monkeypatch.setitem(sys.modules, "ray", ray)
    result = run("encode", clips, "-o", tmp_path / "out", "-m", tiny_model, "-q", "1", "--ray", "auto")
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert [task.args[1].name for task in ray.cancelled] == ["broken.mp4", "b.y4m"]  # the first file was coded
    assert sorted(files(tmp_path / "out")) == ["a.dsae"]
    assert not ray.connected


@pytest.fixture(scope="module")
def ray_instance():
    """This process connected to a local Ray instance of 2 CPUs, which `--ray` then uses."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def test_a_ray_instance_codes_a_folder_as_the_local_mode_does(ray_instance, tiny_model, clips, tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    local = run("encode", clips, "-o", here, "-m", tiny_model, "-q", "1", "--jobs", "1")
    on_ray = run("encode", clips, "-o", there, "-m", tiny_model, "-q", "1", "--ray", "auto")
    assert on_ray.exit_code == local.exit_code == 2, on_ray.output
    assert sorted(files(here)) == ["a.dsae", "sub/b.dsae"]
    assert files(there) == files(here)  # the same bytes, and no temporary file left
    assert summary(on_ray) == summary(local)
    assert on_ray.stderr.splitlines()[-1] == local.stderr.splitlines()[-1]  # names the broken file
    assert "1 of 3 files failed" in on_ray.stderr and "broken.mp4" in on_ray.stderr.splitlines()[-1]

    again = run("encode", clips, "-o", there, "-m", tiny_model, "-q", "1", "--ray", "auto")
    assert again.exit_code == 2 and summary(again)[-1] == "0 coded, 2 skipped, 1 failed"
    assert files(there) == files(here)
