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


@pytest.mark.parametrize("other, field", [({"quality": 0}, "quality"), ({"size": (32, 32)}, "width"),
                                          ({"size": (16, 48)}, "height")])
def test_swap_refuses_mismatched_files(tiny_model, other, field):
    with pytest.raises(BitstreamError, match=f"differ in {field}"):
        swapped(coded(tiny_model, 1), coded(tiny_model, 2, **other))
