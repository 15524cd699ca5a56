"""The `dsaecodec` command: round trips, info, and one-line errors with exit code 2 that leave nothing behind."""
from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dsaecodec import zoo
from dsaecodec.cli import main
from dsaecodec.videoio import VideoWriter, read_video
from helpers import synthetic_clip


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture()
def clip_mp4(tmp_path) -> Path:
    path = tmp_path / "clip.mp4"
    with VideoWriter(path, 40, 24, Fraction(30000, 1001)) as writer:
        for frame in synthetic_clip(11, 24, 40):
            writer.write(frame)
    return path


@pytest.fixture()
def clip_dsae(tiny_model, clip_mp4) -> Path:
    result = run("encode", clip_mp4, "--model", tiny_model, "--quality", 1, "--segment-length", 4)
    assert result.exit_code == 0, result.output
    return clip_mp4.with_suffix(".dsae")


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dsaecodec: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def read_output(path: Path) -> np.ndarray:
    """Frames of a decoded video file, or of a folder of PNGs."""
    if path.is_dir():
        from PIL import Image

        return np.stack([np.asarray(Image.open(p)) for p in sorted(path.iterdir())])
    return read_video(path)[0]


def no_leftovers(folder: Path, expected: set[str]) -> bool:
    return {p.name for p in folder.iterdir()} == expected


@pytest.mark.parametrize("suffix", [".mp4", ".y4m", ""])
def test_encode_decode_round_trip(clip_dsae, suffix):
    out = clip_dsae.with_name("out" + suffix)
    result = run("decode", clip_dsae, "-o", out)
    assert result.exit_code == 0, result.output
    assert read_output(out).shape == (11, 24, 40, 3)
    if suffix:
        assert read_video(out)[1] == Fraction(30000, 1001)


def test_decode_writes_next_to_input_by_default(clip_dsae):
    clip_dsae.with_suffix(".mp4").unlink()
    assert run("decode", clip_dsae).exit_code == 0
    assert clip_dsae.with_suffix(".mp4").is_file()


def test_info_reports_geometry_and_bits(tiny_model, clip_dsae):
    result = run("info", clip_dsae)
    assert result.exit_code == 0
    assert "40x24, 11 frames at 30000/1001 fps" in result.output
    assert "3 of 4 frames" in result.output and "quality     1" in result.output
    assert f"(weights fingerprint {zoo.MODELS[tiny_model].sha256[:16]})" in result.output
    size = clip_dsae.stat().st_size
    assert f"{8 * size / 11:.1f} total" in result.output


def test_existing_output_needs_force(tiny_model, clip_mp4, clip_dsae):
    before = clip_dsae.read_bytes()
    result = run("encode", clip_mp4, "-o", clip_dsae, "--model", tiny_model, "--quality", 0)
    assert_one_line_error(result, "already exists", "--force")
    assert clip_dsae.read_bytes() == before
    result = run("encode", clip_mp4, "-o", clip_dsae, "--model", tiny_model, "--quality", 0, "--force")
    assert result.exit_code == 0 and clip_dsae.read_bytes() != before


def flip_byte(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x10]) + data[offset + 1:]


@pytest.mark.parametrize("damage", ["truncate", "header", "last-segment", "magic", "empty", "text"])
def test_bad_dsae_files_exit_2_and_leave_nothing(clip_dsae, damage):
    data = clip_dsae.read_bytes()
    index_offset = len(data) - 8 - int.from_bytes(data[-8:-4], "little")  # the trailer holds the index's size
    bad = {"truncate": data[: len(data) // 2], "header": flip_byte(data, 10),  # in the model name
           "last-segment": flip_byte(data, index_offset - 1),  # found only after two segments were written
           "magic": b"XXXX" + data[4:], "empty": b"", "text": b"hello, I am not a video\n"}[damage]
    clip_dsae.write_bytes(bad)
    clip_dsae.with_suffix(".mp4").unlink()
    before = {p.name for p in clip_dsae.parent.iterdir()}
    assert_one_line_error(run("decode", clip_dsae))
    assert no_leftovers(clip_dsae.parent, before)
    if damage != "last-segment":  # info reads the header and index, not the payloads
        assert_one_line_error(run("info", clip_dsae))


def test_unreadable_videos_exit_2(tmp_path, tiny_model):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    for path in [text, tmp_path / "missing.mp4", tmp_path]:
        assert_one_line_error(run("encode", path, "-o", tmp_path / "out.dsae", "--model", tiny_model))
    assert not (tmp_path / "out.dsae").exists()
    assert no_leftovers(tmp_path, {"notes.mp4"})


def test_bad_options_exit_2(clip_mp4, tiny_model):
    assert_one_line_error(run("encode", clip_mp4, "--model", tiny_model, "--quality", 9), "quality")
    assert_one_line_error(run("encode", clip_mp4, "--model", "nope"), "unknown model")
    assert not clip_mp4.with_suffix(".dsae").exists()


def test_decoded_frames_equal_codec_reconstruction(tiny_model, clip_mp4, clip_dsae):
    from dsaecodec import codec

    frames, _ = read_video(clip_mp4)
    expected = codec.decode(codec.encode(frames, model_name=tiny_model, quality=1, segment_length=4))
    png_folder = clip_dsae.with_name("frames")
    assert run("decode", clip_dsae, "-o", png_folder).exit_code == 0
    np.testing.assert_array_equal(read_output(png_folder), expected)


def test_models_and_info_answer_without_importing_torch(tiny_model, tmp_path):
    """Listing models and reading a header need only the cards and the torch-free bitstream package, so they
    answer at once (importing torch takes seconds; speed is measured, not asserted)."""
    import subprocess
    import sys

    from dsaecodec import codec

    path = tmp_path / "a.dsae"
    path.write_bytes(codec.encode(synthetic_clip(3, 16, 16), model_name=tiny_model, quality=0))
    script = ("import sys; from click.testing import CliRunner; from dsaecodec.cli import main; "
              "results = [CliRunner().invoke(main, arguments) for arguments in (['models'], ['info', sys.argv[1]])]; "
              "print([r.exit_code for r in results], 'dsae-natural' in results[0].output, "
              "'geometry' in results[1].output, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["[0,", "0]", "True", "True", "False"], result.stdout + result.stderr


def test_a_closed_pipe_ends_output_quietly():
    """`dsaecodec models | head`: once the reader has gone, the command stops without an error message."""
    process = subprocess.Popen([sys.executable, "-m", "dsaecodec.cli", "models"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # before the command has written anything
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 1 and stderr == ""
