"""Classical anchors through PyAV: encode RGB frames with an FFmpeg encoder, count packet bytes, decode.

Rates count the bytes of the encoded packets (no container), minus x264's SEI that carries its
options as text (~600 B, which a real stream does not need); x265 is asked not to write its own
(`info=0`). Frames are converted RGB -> 4:2:0 YUV (BT.601, limited range) before coding and back
after, so the chroma subsampling loss is part of the measured PSNR.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from dsaecodec.videoio import picture_to_rgb, rgb_to_picture

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration on stdout unless told otherwise


@dataclass(frozen=True)
class Anchor:
    """An FFmpeg encoder at fixed settings, swept over `crfs` (constant-quality values)."""

    name: str
    encoder: str
    decoder: str
    crfs: tuple[int, ...]
    options: dict[str, str] = field(default_factory=dict)
    settings: str = ""  # what the results table says about it


ANCHORS = {
    anchor.name: anchor
    for anchor in [
        Anchor("x264-medium", "libx264", "h264", (22, 27, 32, 37, 42, 47), {"preset": "medium"},
               "libx264 preset medium, default GOP (keyint 250), B-frames, 4:2:0"),
        Anchor("x264-veryslow", "libx264", "h264", (22, 27, 32, 37, 42, 47), {"preset": "veryslow"},
               "libx264 preset veryslow, default GOP, B-frames, 4:2:0"),
        Anchor("x265-medium", "libx265", "hevc", (22, 27, 32, 37, 42, 47),
               {"preset": "medium", "x265-params": "log-level=none:info=0"},
               "libx265 preset medium, info=0, default GOP, 4:2:0"),
        Anchor("svtav1", "libsvtav1", "libdav1d", (30, 38, 46, 54, 60, 63), {"preset": "8"},
               "libsvtav1 preset 8, default GOP, 4:2:0"),
        Anchor("vp9", "libvpx-vp9", "vp9", (24, 32, 40, 48, 56, 63),
               {"deadline": "good", "cpu-used": "4", "b": "0"},
               "libvpx-vp9 good, cpu-used 4, constant quality (b:v 0), 4:2:0"),
    ]
}

_X264_SEI_MARK = b"x264 - core"


def _without_x264_sei(payload: bytes) -> int:
    """Size of an Annex-B packet minus any SEI NAL unit holding x264's options text."""
    if _X264_SEI_MARK not in payload:
        return len(payload)
    starts = [i for i in range(len(payload) - 2) if payload[i:i + 3] == b"\x00\x00\x01"]
    size = len(payload)
    for begin, end in zip(starts, starts[1:] + [len(payload)]):
        nal = payload[begin + 3:end]
        if nal and nal[0] & 0x1F == 6 and _X264_SEI_MARK in nal:
            size -= end - begin
    return size


def encode_packets(frames: np.ndarray, anchor: Anchor, crf: int, fps: Fraction = Fraction(25),
                   threads: int | None = None) -> tuple[list[av.Packet], bytes]:
    """Code uint8 RGB frames (N, H, W, 3) at `crf`; return (packets, the encoder's extradata)."""
    encoder = av.CodecContext.create(anchor.encoder, "w")
    encoder.width, encoder.height, encoder.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    encoder.time_base, encoder.framerate = 1 / fps, fps
    encoder.options = {**anchor.options, "crf": str(crf)}
    if threads:
        encoder.thread_count = threads
    packets = []
    for index, frame in enumerate(frames):
        picture = rgb_to_picture(frame, "yuv420p")
        picture.pts = index
        packets.extend(encoder.encode(picture))
    packets.extend(encoder.encode(None))
    return packets, bytes(encoder.extradata or b"")


def decode_packets(packets: list[av.Packet], anchor: Anchor, extradata: bytes = b"",
                   threads: int | None = None) -> np.ndarray:
    """Decode an anchor's packets back to uint8 RGB frames (N, H, W, 3)."""
    decoder = av.CodecContext.create(anchor.decoder, "r")
    if extradata:
        decoder.extradata = extradata
    if threads:
        decoder.thread_count = threads
    decoded = [picture_to_rgb(picture) for packet in packets for picture in decoder.decode(packet)]
    decoded += [picture_to_rgb(picture) for picture in decoder.decode(None)]
    return np.stack(decoded)


def encode_decode(frames: np.ndarray, anchor: Anchor, crf: int, fps: Fraction = Fraction(25),
                  threads: int | None = None) -> tuple[int, np.ndarray]:
    """Code uint8 RGB frames (N, H, W, 3) at `crf`; return (payload bytes, decoded frames (N, H, W, 3)).
    threads=None: the libraries' default threading; threads=1: one thread (x264: no frame threads, which cost
    bits). Either way libx264 now and then codes a clip a few bytes differently in another process."""
    packets, extradata = encode_packets(frames, anchor, crf, fps, threads)
    decoded = decode_packets(packets, anchor, extradata, threads)
    if len(decoded) != len(frames):
        raise RuntimeError(f"{anchor.name} decoded {len(decoded)} of {len(frames)} frames")
    return sum(_without_x264_sei(bytes(p)) for p in packets), decoded
