"""`dsaecodec encode DIR -o OUTDIR`: every video of a folder, failures reported and carried on."""
from __future__ import annotations

import pytest

from helpers import video_folder
from test_cli import run


@pytest.fixture()
def corpus(tmp_path):
    folder = video_folder(tmp_path / "clips", {"a.mp4": 5, "sub/b.y4m": 3}, width=32, height=16)
    (folder / "notes.txt").write_text("not a video either, and not taken for one")
    return folder


def test_a_folder_is_coded_file_by_file_and_a_broken_file_is_named(tiny_model, corpus, tmp_path):
    out = tmp_path / "coded"
    result = run("encode", corpus, "-o", out, "-m", tiny_model, "-q", "1", "--jobs", "1")
    assert result.exit_code == 2, result.output + result.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.dsae")) == ["a.dsae", "sub/b.dsae"], result.output + result.stderr
    assert {p.name for p in out.rglob("*")} == {"a.dsae", "sub", "b.dsae"}  # no temporary files left
    assert "broken.mp4" in result.stderr.splitlines()[-1] and "1 of 3 files failed" in result.stderr
    assert "2 coded, 0 skipped, 1 failed" in result.output
    single = tmp_path / "a.dsae"
    assert run("encode", corpus / "a.mp4", "-o", single, "-m", tiny_model, "-q", "1", "--jobs", "1").exit_code == 0
    assert (out / "a.dsae").read_bytes() == single.read_bytes()
    assert run("decode", out / "sub" / "b.dsae", "-o", tmp_path / "b.y4m").exit_code == 0

    again = run("encode", corpus, "-o", out, "-m", tiny_model, "-q", "1", "--jobs", "1")  # existing outputs are kept
    assert "0 coded, 2 skipped, 1 failed" in again.output and again.exit_code == 2
    (corpus / "broken.mp4").unlink()
    assert run("encode", corpus, "-o", out, "-m", tiny_model, "-q", "1", "--force").exit_code == 0


def test_a_folder_that_fails_entirely_leaves_no_output_folder(tiny_model, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "broken.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not matroska")
    result = run("encode", folder, "-m", tiny_model, "-q", "1")
    assert result.exit_code == 2 and "broken.mkv" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clips"]  # the default clips-dsae was removed again


@pytest.mark.parametrize("inside", [True, False])
def test_bad_folders_get_one_line(tiny_model, tmp_path, inside):
    folder = tmp_path / "clips"
    folder.mkdir()
    result = run("encode", folder, "-o", folder / "out" if inside else tmp_path / "out", "-m", tiny_model, "-q", "1")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert ("must not be inside" if inside else "holds no videos") in result.stderr
