"""Helpers of the tests: small synthetic clips, encoding with the reconstruction kept."""
from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import numpy as np

# an RNN codec whose state reads its reconstructions, so that its decoding loop holds its synthesis: no shipped model
# does any more, and the tests keep that path covered with these weights
RECONSTRUCTION_DRIVEN = Path(__file__).resolve().parent.parent / "checkpoints/rnn-sprites-recon/rnn-sprites-recon.pt"


def synthetic_clip(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 (frames, height, width, 3): a smooth colour gradient with a square moving across it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1), np.full_like(x, 128.0)], -1)
    clip = np.repeat(base[None], frames, axis=0)
    size = max(2, min(height, width) // 4)
    colour = rng.integers(0, 256, 3)
    for t in range(frames):
        top, left = (t * 2) % max(1, height - size), (t * 3) % max(1, width - size)
        clip[t, top:top + size, left:left + size] = colour
    return clip.round().astype(np.uint8)


def video_folder(folder: Path, frames: dict[str, int], width: int, height: int) -> Path:
    """A folder of synthetic clips (`frames`: relative path -> frame count; subfolders made) and a broken file,
    `broken.mp4`, as the folder mode's tests code them."""
    from fractions import Fraction

    from dsaecodec.videoio import VideoWriter

    for name, count in frames.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        with VideoWriter(folder / name, width, height, Fraction(25)) as writer:
            for frame in synthetic_clip(count, height, width):
                writer.write(frame)
    (folder / "broken.mp4").write_bytes(b"not a video")
    return folder


def encode_with_reconstruction(frames, **options) -> tuple[bytes, np.ndarray]:
    """(bytes of the .dsae file, the encoder's reconstruction uint8 (N, H, W, 3)) of `codec.encode_stream`."""
    from dsaecodec import codec

    out = io.BytesIO()
    segments = list(codec.encode_stream(iter(frames), out, **options))
    return out.getvalue(), np.concatenate([s.reconstruction for s in segments])


def load_script(name: str):
    """benchmarks/<name>.py as module `name`, as the scripts import each other (the folder is not a package;
    the scripts put it on sys.path, so processes they spawn can import the module by that name too)."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def assert_resume_is_exact(tmp_path: Path, options: list[str], stop_after: int) -> None:
    """`dsaecodec train OPTIONS` run straight through and stopped after `stop_after` steps then resumed end with
    identical weights."""
    import torch

    from dsaecodec import train

    straight, split = tmp_path / "straight", tmp_path / "split"
    train.main(["--out", str(straight / "m.pt"), *options])
    train.main(["--out", str(split / "m.pt"), *options, "--stop-after", str(stop_after)])
    from dsaecodec.zoo import load_weights

    load_weights(split / "m.pt")  # a stage leaves usable weights of its last step
    train.main(["--out", str(split / "m.pt"), *options, "--resume"])
    a = torch.load(straight / "m.pt", weights_only=True)["state_dict"]
    b = torch.load(split / "m.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
