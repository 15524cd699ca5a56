"""`--jobs`: segments coded in worker processes give the bytes and frames of one process, in order."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from dsaecodec import codec
from dsaecodec.cli import main
from dsaecodec.parallel import ordered_map
from helpers import encode_with_reconstruction, synthetic_clip


def test_ordered_map_keeps_order_and_bounds_what_is_in_flight():
    pulled = []

    def items():
        for k in range(12):
            pulled.append(k)
            yield -k

    results = ordered_map(abs, items(), jobs=2)
    assert next(results) == 0
    assert len(pulled) == 4  # 2 * jobs items in flight, no more read ahead
    assert list(results) == list(range(1, 12))


def test_ordered_map_raises_a_workers_error():
    with pytest.raises(ValueError, match="invalid literal"):
        list(ordered_map(int, ["1", "2", "three", "4"], jobs=2))


def test_ordered_map_refuses_no_jobs():
    with pytest.raises(ValueError, match="at least 1"):
        list(ordered_map(abs, [1], jobs=0))


def test_two_jobs_write_the_bytes_and_frames_of_one(tiny_model):
    clip = synthetic_clip(20, 32, 48)  # three segments of 8, 8 and 4 frames
    one, one_frames = encode_with_reconstruction(clip, model_name=tiny_model, quality=1, jobs=1)
    two, two_frames = encode_with_reconstruction(clip, model_name=tiny_model, quality=1, jobs=2)
    assert one == two and np.array_equal(one_frames, two_frames)
    decoder = codec.Decoder(one)
    decoded = list(decoder.segments(range(len(decoder)), jobs=2))
    assert [len(s) for s in decoded] == [8, 8, 4]
    assert np.array_equal(np.concatenate(decoded), one_frames)


def test_cli_jobs_option(tiny_model, tmp_path):
    from dsaecodec.videoio import VideoWriter

    clip = synthetic_clip(12, 32, 32)
    source = tmp_path / "clip.y4m"
    with VideoWriter(source, 32, 32, 25) as writer:
        for frame in clip:
            writer.write(frame)
    runner = CliRunner()
    for jobs in ("1", "2"):
        result = runner.invoke(main, ["encode", str(source), "-o", str(tmp_path / f"{jobs}.dsae"), "-m", tiny_model, "-q", "1",
                                      "--jobs", jobs])
        assert result.exit_code == 0, result.output
        result = runner.invoke(main, ["decode", str(tmp_path / f"{jobs}.dsae"), "-o", str(tmp_path / f"{jobs}.y4m"),
                                      "--jobs", jobs])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "1.dsae").read_bytes() == (tmp_path / "2.dsae").read_bytes()
    assert (tmp_path / "1.y4m").read_bytes() == (tmp_path / "2.y4m").read_bytes()
    result = runner.invoke(main, ["encode", str(source), "-o", str(tmp_path / "0.dsae"), "--jobs", "0"])
    assert result.exit_code == 2 and not (tmp_path / "0.dsae").exists()


def test_workers_can_start_before_torch_is_imported():
    """`start_workers_early` starts the fork server (which imports the codec) without importing torch here, and
    only when there will be workers."""
    script = ("import sys; from multiprocessing import forkserver; from dsaecodec.parallel import start_workers_early; "
              "start_workers_early(1); one = forkserver._forkserver._forkserver_pid; "
              "start_workers_early(2); print(one, forkserver._forkserver._forkserver_pid is not None, "
              "'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["None", "True", "False"], result.stdout + result.stderr
