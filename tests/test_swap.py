"""Compressed-domain content swap: payloads are copied, sizes add up, mismatches are refused."""
from __future__ import annotations

import io

import numpy as np
import pytest

from bitstream.edit import swap
from bitstream.format import BitstreamError, BitstreamReader
from dsaecodec import codec
from helpers import synthetic_clip


def coded(tiny_model, seed: int, frames: int = 10, quality: int = 1, size=(32, 48)) -> bytes:
    return codec.encode(synthetic_clip(frames, *size, seed=seed), model_name=tiny_model, quality=quality,
                        segment_length=4)


def swapped(content: bytes, motion: bytes) -> bytes:
    out = io.BytesIO()
    swap(BitstreamReader(content), BitstreamReader(motion), out)
    return out.getvalue()


def test_swap_copies_payloads_and_sizes_add_up(tiny_model):
    content, motion = coded(tiny_model, 1), coded(tiny_model, 2)
    result = swapped(content, motion)
    a, b, c = BitstreamReader(content), BitstreamReader(motion), BitstreamReader(result)
    assert len(c) == 3 and c.header.frame_count == 10
    for k in range(len(c)):
        assert c.read_segment(k).f_payload == a.read_segment(k).f_payload
        assert c.read_segment(k).z_payload == b.read_segment(k).z_payload
    # same container overhead as the motion file, f payloads from the content file
    f_a = sum(a.segment_sizes(k)[0] for k in range(3))
    f_b = sum(b.segment_sizes(k)[0] for k in range(3))
    assert len(result) == len(motion) - f_b + f_a


def test_swapped_file_decodes_to_content_with_motion(tiny_model):
    content, motion = coded(tiny_model, 1), coded(tiny_model, 2)
    frames = codec.decode(swapped(content, motion))
    assert frames.shape == (10, 32, 48, 3)
    # swapping back the original f gives the motion file's own frames
    np.testing.assert_array_equal(codec.decode(swapped(motion, motion)), codec.decode(motion))


def test_swap_truncates_to_the_shorter_file(tiny_model):
    result = swapped(coded(tiny_model, 1, frames=5), coded(tiny_model, 2, frames=10))
    assert BitstreamReader(result).header.frame_count == 8  # two segments of the motion file
    assert codec.decode(result).shape[0] == 8


@pytest.mark.parametrize("other, problem", [({"quality": 0}, "segment 0 was coded at quality 1 in the content file and 0 "),
                                            ({"size": (32, 32)}, "differ in width"),
                                            ({"size": (16, 48)}, "differ in height")])
def test_swap_refuses_mismatched_files(tiny_model, other, problem):
    with pytest.raises(BitstreamError, match=problem):
        swapped(coded(tiny_model, 1), coded(tiny_model, 2, **other))


def write(path, data: bytes):
    path.write_bytes(data)
    return str(path)


def test_swap_cli_and_its_errors(tiny_model, tmp_path):
    from click.testing import CliRunner

    from dsaecodec.cli import main

    a, b = write(tmp_path / "a.dsae", coded(tiny_model, 1)), write(tmp_path / "b.dsae", coded(tiny_model, 2))
    other = write(tmp_path / "c.dsae", coded(tiny_model, 3, quality=0))
    runner = CliRunner()
    result = runner.invoke(main, ["swap", a, b, "-o", str(tmp_path / "ab.dsae")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ab.dsae").read_bytes() == swapped(coded(tiny_model, 1), coded(tiny_model, 2))
    for args in ([a, other, "-o", str(tmp_path / "x.dsae")], [a, b, "-o", str(tmp_path / "ab.dsae")],
                 [a, str(tmp_path / "missing.dsae"), "-o", str(tmp_path / "y.dsae")]):
        result = runner.invoke(main, ["swap", *args])
        assert result.exit_code == 2 and result.stderr.startswith("dsaecodec: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dsae", "ab.dsae", "b.dsae", "c.dsae"]


def test_generate_from_priors_and_files(tiny_model, tmp_path):
    from dsaecodec.codec import Decoder, generate

    sampled = np.concatenate(list(generate(11, model_name=tiny_model, quality=1, size=(40, 24), segment_length=4)))
    assert sampled.shape == (11, 24, 40, 3)
    again = np.concatenate(list(generate(11, model_name=tiny_model, quality=1, size=(40, 24), segment_length=4)))
    np.testing.assert_array_equal(sampled, again)  # seeded
    motion_data = coded(tiny_model, 2)
    motion, content = Decoder(motion_data), Decoder(coded(tiny_model, 1))
    # fixed content and fixed motion from the same file is that file's decode
    same = np.concatenate(list(generate(100, content=motion, motion=motion)))
    np.testing.assert_array_equal(same, codec.decode(motion_data))
    assert np.concatenate(list(generate(6, content=content))).shape == (6, 32, 48, 3)
    assert np.concatenate(list(generate(100, motion=motion))).shape == (10, 32, 48, 3)
    with pytest.raises(ValueError, match="share"):
        list(generate(4, content=content, motion=Decoder(coded(tiny_model, 2, size=(32, 32)))))
    # f and z decoded each at its own segment's quality
    mixed = np.concatenate(list(generate(4, content=content, motion=Decoder(coded(tiny_model, 2, quality=0)))))
    assert mixed.shape == (4, 32, 48, 3)


def test_generate_cli(tiny_model, tmp_path):
    from click.testing import CliRunner

    from dsaecodec.cli import main
    from dsaecodec.videoio import read_video

    runner = CliRunner()
    out = tmp_path / "gen.mp4"
    result = runner.invoke(main, ["generate", "-m", tiny_model, "-q", "1", "--size", "40x24", "-n", "5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert read_video(out)[0].shape == (5, 24, 40, 3)
    content = write(tmp_path / "a.dsae", coded(tiny_model, 1))
    result = runner.invoke(main, ["generate", "--content", content, "-n", "3", "-o", str(tmp_path / "c.y4m")])
    assert result.exit_code == 0 and read_video(tmp_path / "c.y4m")[0].shape == (3, 32, 48, 3)
    for bad in (["--size", "big"], ["-q", "7"], ["--motion", str(tmp_path / "missing.dsae")]):
        result = runner.invoke(main, ["generate", "-m", tiny_model, *bad, "-o", str(tmp_path / "x.mp4")])
        assert result.exit_code == 2 and result.stderr.startswith("dsaecodec: error: "), result.output
    assert not (tmp_path / "x.mp4").exists()
