"""Continuous quality and rate control on a tiny random model: fractional qualities, --bitrate, --target-psnr."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from bitstream.format import QUALITY_STEPS, BitstreamReader
from dsaecodec import codec
from dsaecodec.metrics import psnr
from dsaecodec.videoio import VideoWriter
from helpers import synthetic_clip
from test_cli import assert_one_line_error, run


def bits_per_frame(data: bytes) -> float:
    """Payloads of a file plus the record overhead that rate control counts, in bits per frame."""
    reader = BitstreamReader(data)
    record_bytes = sum(sum(reader.segment_sizes(k)) + codec.RECORD_OVERHEAD for k in range(len(reader)))
    return 8 * record_bytes / reader.header.frame_count


def segment_qualities(data: bytes) -> list[float]:
    reader = BitstreamReader(data)
    return [reader.segment_quality(k) / QUALITY_STEPS for k in range(len(reader))]


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return synthetic_clip(16, 32, 48)


def test_fractional_qualities_lie_between_the_levels(tiny_model, clip):
    sizes = [len(codec.encode(clip, model_name=tiny_model, quality=q, segment_length=8)) for q in (0, 0.5, 1)]
    assert sizes[0] < sizes[1] < sizes[2]
    data = codec.encode(clip, model_name=tiny_model, quality=0.3, segment_length=8)
    assert segment_qualities(data) == [5 / 16, 5 / 16]  # 0.3 rounded to steps of 1/16
    np.testing.assert_array_equal(codec.decode(data), codec.decode(data))
    with pytest.raises(ValueError, match="quality must be 0..1"):
        codec.encode(clip, model_name=tiny_model, quality=1.01)


@pytest.mark.parametrize("share", [0.25, 0.5, 0.75])
def test_a_bitrate_target_between_the_levels_is_met(tiny_model, clip, share):
    low, high = (bits_per_frame(codec.encode(clip, model_name=tiny_model, quality=q)) for q in (0, 1))
    assert high > 1.2 * low  # room for the search to work in
    wanted = low * (high / low) ** share
    data = codec.encode(clip, model_name=tiny_model, target=codec.Target(bits_per_frame=wanted))
    assert abs(bits_per_frame(data) / wanted - 1) < 0.10
    assert all(0 < q < 1 for q in segment_qualities(data))


def test_targets_beyond_the_range_take_the_extreme_levels(tiny_model, clip):
    assert segment_qualities(codec.encode(clip, model_name=tiny_model, target=codec.Target(bits_per_frame=1))) == [0, 0]
    assert segment_qualities(codec.encode(clip, model_name=tiny_model, target=codec.Target(bits_per_frame=1e9))) == [1, 1]


def test_a_psnr_target_is_the_nearest_probe(tiny_model, clip):
    low, high = (psnr(clip, codec.decode(codec.encode(clip, model_name=tiny_model, quality=q))) for q in (0, 1))
    wanted = (low + high) / 2
    reached = psnr(clip, codec.decode(codec.encode(clip, model_name=tiny_model, target=codec.Target(psnr=wanted))))
    assert abs(reached - wanted) <= min(abs(low - wanted), abs(high - wanted))


def test_rate_control_writes_the_same_bytes_with_any_jobs(tiny_model, clip):
    target = codec.Target(bits_per_frame=bits_per_frame(codec.encode(clip, model_name=tiny_model, quality=0.5)))
    first = codec.encode(clip, model_name=tiny_model, target=target, segment_length=4)
    assert codec.encode(clip, model_name=tiny_model, target=target, segment_length=4, jobs=2) == first


def test_a_target_sets_exactly_one_goal():
    for bad in ({}, {"bits_per_frame": 100, "psnr": 30}, {"bits_per_frame": 0}, {"bits_per_frame": -5}):
        with pytest.raises(ValueError):
            codec.Target(**bad)


@pytest.fixture()
def clip_y4m(tmp_path, clip):
    path = tmp_path / "clip.y4m"
    with VideoWriter(path, 48, 32, Fraction(25)) as writer:
        for frame in clip:
            writer.write(frame)
    return path


def test_cli_bitrate_is_bits_per_second(tiny_model, clip, clip_y4m):
    low, high = (bits_per_frame(codec.encode(clip, model_name=tiny_model, quality=q)) for q in (0, 1))
    kbits = 25 * (low * high) ** 0.5 / 1000  # 25 frames/s
    out = clip_y4m.with_name("rate.dsae")
    result = run("encode", clip_y4m, "-o", out, "-m", tiny_model, "--bitrate", f"{kbits:.3f}k")
    assert result.exit_code == 0, result.output
    assert abs(bits_per_frame(out.read_bytes()) * 25 / 1000 / kbits - 1) < 0.10
    assert "kbit/s" in result.output
    info = run("info", out)
    assert "(set per segment)" in info.output or len(set(segment_qualities(out.read_bytes()))) == 1


@pytest.mark.parametrize("options, fragment", [
    (["--bitrate", "fast"], "--bitrate takes bits per second"),
    (["--bitrate", "-3k"], "--bitrate takes bits per second"),
    (["--bitrate", "0"], "--bitrate takes bits per second"),
    (["--bitrate", "inf"], "--bitrate takes bits per second"),
    (["--bitrate", "100k", "--target-psnr", "30"], "give one of"),
    (["--bitrate", "100k", "-q", "1"], "give one of"),
    (["-q", "1.5"], "quality must be 0..1"),
])
def test_cli_rejects_bad_rate_options(tiny_model, clip_y4m, options, fragment):
    out = clip_y4m.with_name("bad.dsae")
    assert_one_line_error(run("encode", clip_y4m, "-o", out, "-m", tiny_model, *options), fragment)
    assert not out.exists() and {p.name for p in clip_y4m.parent.iterdir()} == {"clip.y4m"}
