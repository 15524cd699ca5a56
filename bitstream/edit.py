"""Edits of .dsae files in the compressed domain: entropy-coded payloads are copied, never re-coded.

The prior of the dynamic latents z_1:T does not depend on the static latent f, so the f payload of
one file and the z payload of another form a valid segment of a third.
"""
from __future__ import annotations

import dataclasses
from typing import BinaryIO

from bitstream.format import QUALITY_STEPS, BitstreamError, BitstreamReader, BitstreamWriter, Header, Segment

_MUST_MATCH = ("model_name", "weights_fingerprint", "width", "height", "segment_length")


def swap(content: BitstreamReader, motion: BitstreamReader, out: BinaryIO) -> Header:
    """Write to `out` a file whose segment k takes f from `content` and z_1:T from `motion`.

    Both files must share model, weights, frame size and segment length, and their segments k the quality
    (BitstreamError naming the first difference otherwise). The result has min(len(content), len(motion)) segments,
    with the frame counts and fps of `motion`, and the sound of `motion` (if it has any: its timeline is the
    output's), copied whole. Returns the header written.
    """
    for field in _MUST_MATCH:
        a, b = getattr(content.header, field), getattr(motion.header, field)
        if a != b:
            shown = (a.hex()[:16], b.hex()[:16]) if isinstance(a, bytes) else (a, b)
            raise BitstreamError(f"cannot swap: the files differ in {field.replace('_', ' ')} ({shown[0]} vs {shown[1]})")
    if len(content) and content.read_segment(0).f_symbols == 0:
        raise BitstreamError(f"cannot swap: model {content.header.model_name} codes no static latent f")
    writer = BitstreamWriter(out, dataclasses.replace(motion.header, frame_count=0))
    frames = 0
    for k in range(min(len(content), len(motion))):
        f_source, z_source = content.read_segment(k), motion.read_segment(k)
        if f_source.quality != z_source.quality:
            qualities = f_source.quality / QUALITY_STEPS, z_source.quality / QUALITY_STEPS
            raise BitstreamError(f"cannot swap: segment {k} was coded at quality {qualities[0]:g} in the content file "
                                 f"and {qualities[1]:g} in the motion file")
        writer.write_segment(Segment(frame_count=z_source.frame_count, quality=z_source.quality, f_symbols=f_source.f_symbols,
                                     f_payload=f_source.f_payload, z_symbols=z_source.z_symbols,
                                     z_payload=z_source.z_payload))
        frames += z_source.frame_count
    writer.close(audio=motion.read_audio())
    return dataclasses.replace(motion.header, frame_count=frames)
