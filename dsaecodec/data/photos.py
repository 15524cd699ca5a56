"""Still photos as training video: the offline photo collection, and clips made from it by camera motion.

Prepare the collection once (downloads Debian packages of desktop backgrounds through apt, ~230 MB, and
adds the sample images bundled with matplotlib, scikit-image and scikit-learn where installed):

    python -m dsaecodec.data.photos ~/dsae-photos

Each photo is stored as a JPEG (quality 95) with its short side at most `MAX_SIDE` pixels, near-duplicates
(the same wallpaper at several resolutions) removed, and `SOURCES.csv` lists where each came from.

`PhotoClips` turns photos into (T, 3, crop, crop) clips with what a real camera adds: a pan, a zoom and a small
rotation at sub-pixel precision, a brightness drift, now and then an object (a patch of another photo under a
soft elliptical mask) moving across the scene on its own path, motion blur (each frame averages the scene
over the open shutter) and sensor noise, then 8-bit quantisation.
"""
from __future__ import annotations

import argparse
import csv
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

PACKAGES = ("gnome-backgrounds", "mate-backgrounds", "ukui-wallpapers", "lomiri-wallpapers",
            "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "plasma-workspace-wallpapers", "sway-backgrounds")
"""Debian packages of desktop backgrounds (photos and artwork) that make up the collection."""
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
MAX_SIDE = 720  # short side of a stored photo, pixels
MIN_SIDE = 256  # smaller images are left out
DETAIL_CELL = 16  # pixels per side of a cell of a photo's detail map


def _average_hash(image: Image.Image) -> str:
    """64-bit average hash of the 8x8 grey thumbnail: equal for one picture at several resolutions."""
    grey = np.asarray(image.convert("L").resize((8, 8), Image.Resampling.BOX), dtype=np.float32)
    return np.packbits(grey > grey.mean()).tobytes().hex()


def _bundled_images() -> list[tuple[str, Path]]:
    """(source, path) of the sample photos that matplotlib, scikit-image and scikit-learn ship, where installed."""
    found = []
    try:
        import matplotlib

        found += [("matplotlib", p) for p in sorted((Path(matplotlib.get_data_path()) / "sample_data").glob("*.jpg"))]
    except ImportError:
        pass
    for package, folder in (("skimage", "data"), ("sklearn", "datasets/images")):
        try:
            module = __import__(package)
        except ImportError:
            continue
        found += [(package, p) for p in image_paths(Path(module.__file__).parent / folder)]
    return found


def prepare(out: Path, packages: tuple[str, ...] = PACKAGES) -> int:
    """Assemble the photo collection in `out` (created; files of the same names are replaced, SOURCES.csv lists
    this run's photos). Returns the number of photos."""
    out.mkdir(parents=True, exist_ok=True)
    candidates: list[tuple[str, Path]] = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for package in packages:
            result = subprocess.run(["apt-get", "download", package], cwd=work, capture_output=True, text=True)
            if result.returncode:
                reason = (result.stderr.strip().splitlines() or [f"apt-get exit code {result.returncode}"])[-1]
                print(f"  skipped {package}: {reason}", file=sys.stderr)
                continue
            for deb in work.glob(f"{package}_*.deb"):
                root = work / package
                subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
                candidates += [(package, p) for p in image_paths(root)]
                deb.unlink()
        candidates += _bundled_images()
        # largest first, so that of several resolutions of one picture the best is kept
        sized = []
        for source, path in candidates:
            try:
                with Image.open(path) as image:
                    sized.append((image.width * image.height, source, path))
            except OSError:
                continue
        seen, rows = set(), []
        for _, source, path in sorted(sized, key=lambda item: -item[0]):
            with Image.open(path) as image:
                image = image.convert("RGB")
            if min(image.size) < MIN_SIDE:
                continue
            key = _average_hash(image)
            if key in seen:
                continue
            seen.add(key)
            scale = MAX_SIDE / min(image.size)
            if scale < 1:
                image = image.resize((round(image.width * scale), round(image.height * scale)),
                                     Image.Resampling.LANCZOS)
            name = f"{source}-{key[:8]}-{path.stem[:40]}.jpg"  # e.g. plasma: many <Name>/contents/images/WxH.jpg
            image.save(out / name, quality=95)
            rows.append({"file": name, "source": source, "original": path.name,
                         "width": image.width, "height": image.height})
    with open(out / "SOURCES.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "source", "original", "width", "height"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def files_with_suffix(source: Path, suffixes: set[str]) -> list[Path]:
    """`source` itself if it is a file with one of `suffixes`, else such files under it (recursively), sorted."""
    source = Path(source)
    found = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    return [p for p in found if p.suffix.lower() in suffixes]


def image_paths(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively), sorted."""
    return files_with_suffix(folder, IMAGE_SUFFIXES)


def _affine(centre: np.ndarray, side: float, angle: float, size: tuple[int, int]) -> torch.Tensor:
    """The (2, 3) `affine_grid` matrix that samples a square of `side` pixels, rotated by `angle` (radians),
    centred on `centre` (x, y pixels) of an image of `size` (width, height)."""
    width, height = size
    cos, sin = math.cos(angle), math.sin(angle)
    sx, sy = side / width, side / height
    return torch.tensor([[sx * cos, -sx * sin, 2 * centre[0] / width - 1],
                         [sy * sin, sy * cos, 2 * centre[1] / height - 1]], dtype=torch.float32)


def fine_detail(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) images minus their 4x down-sampled (averaged) and bilinearly up-sampled selves: the detail finer
    than 4 pixels, (N, C, H, W)."""
    blurred = F.interpolate(F.avg_pool2d(images, 4), size=images.shape[-2:], mode="bilinear", align_corners=False)
    return images - blurred


class PhotoClips(Dataset):
    """(T, 3, crop, crop) float clips in [0, 1] made from still photos by synthetic camera and object motion.

    Photos are held in memory as uint8 (3, H, W). Items are a pure function of (seed, index). Per clip:
    the camera's field of view is 1x-`max_field`x the crop, log-uniform (so detail appears at several scales;
    a photo is first averaged over 2x2, 4x4 or 8x8 pixels when the view shrinks it by 2, 4 or 8), it pans at up to
    ~2 output pixels per frame, zooms by up to +-2% and turns by up to +-0.4 degrees per frame; brightness
    drifts by up to +-1.5% per frame; with probability 1/2 one to two objects move across it; frames average
    `shutter_samples` positions over half the frame interval (motion blur); Gaussian noise of 0-2 levels.

    `detail_bias` > 0 aims the camera at detail: its centre is drawn with probability proportional to the
    view's fine-detail energy (`detail_map`) to that power, instead of uniformly (0, the default, as before).
    Wallpapers are mostly smooth sky and bokeh; low-resolution video such as carphone is detail throughout.
    """

    def __init__(self, paths: list[Path], frames: int = 8, crop: int = 64, length: int = 100_000, seed: int = 0,
                 shutter_samples: int = 3, max_field: float = 3.0, detail_bias: float = 0.0):
        if not paths:
            raise FileNotFoundError("no photos given")
        self.frames, self.crop, self.length, self.seed = frames, crop, length, seed
        self.shutter_samples, self.max_field, self.detail_bias = shutter_samples, max_field, detail_bias
        self.photos = []
        for path in paths:
            with Image.open(path) as image:
                photo = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()
            if min(photo.shape[1:]) >= crop:
                self.photos.append(photo)
        if not self.photos:
            raise ValueError(f"no photo is at least {crop}x{crop}")
        self.description = (f"camera-motion clips of {len(self.photos)} photos ({sum(p[0].numel() for p in self.photos):,}"
                            f" pixels; views up to {max_field:g}x the crop"
                            + (f", aimed at detail with bias {detail_bias:g})" if detail_bias else ")"))
        self._sources: dict[tuple[int, int], torch.Tensor] = {}
        if length >= len(self.photos):  # a training set: every source up front, so DataLoader workers share them
            views = [set((1, 2, 4, 8)[:self._largest_factor(photo) + 1]) for photo in self.photos]
            objects = {factor for factors in views for factor in factors if factor >= 4}  # any photo, see __getitem__
            for index, factors in enumerate(views):
                for factor in sorted(factors | objects):
                    self._source(index, factor)
        self._detail: dict[tuple[int, int], torch.Tensor] = {}

    def _largest_factor(self, photo: torch.Tensor) -> int:
        """log2 of the largest pre-filter factor a view of `photo` (uint8 (3, H, W)) can have (`__getitem__`)."""
        return min(3, int(math.log2(min(self.max_field, min(photo.shape[1:]) / self.crop))))

    def _source(self, index: int, factor: int = 1) -> torch.Tensor:
        """Photo `index` as float (3, H, W) in [0, 1] for sampling, first averaged over `factor` x `factor`
        pixels and rounded to 8 bits (3, H/factor, W/factor). Kept once made (about 4 bytes a pixel); a training
        set's __init__ makes every one its items can need."""
        if (index, factor) not in self._sources:
            photo = self.photos[index]
            if factor > 1:
                photo = F.avg_pool2d(photo[None].float(), factor)[0].round().to(torch.uint8)
            self._sources[index, factor] = photo.float().div(255.0)
        return self._sources[index, factor]

    def detail_map(self, index: int, factor: int) -> torch.Tensor:
        """Fine-detail energy of `_source(index, factor)` per DETAIL_CELL x DETAIL_CELL cell, (H/cell, W/cell): the
        mean square of its `fine_detail` (what benchmarks/data_detail.py measures). Kept once made."""
        if (index, factor) not in self._detail:
            energy = fine_detail(self._source(index, factor)[None]).pow(2).mean(dim=1, keepdim=True)
            self._detail[index, factor] = F.avg_pool2d(energy, DETAIL_CELL)[0, 0]
        return self._detail[index, factor]

    def _detailed_centre(self, rng: np.random.Generator, detail: torch.Tensor, side: float,
                         low: np.ndarray, high: np.ndarray) -> np.ndarray | None:
        """A view centre (x, y) in [low, high] drawn with probability ~ (the detail energy of a `side`-pixel view
        around it) ** detail_bias, from a cell map (`detail_map`); None if no cell centre is in range."""
        k = max(1, round(side / DETAIL_CELL)) | 1  # odd: the view's extent in cells
        energy = F.avg_pool2d(detail[None, None], k, stride=1, padding=k // 2, count_include_pad=False)[0, 0]
        ys = (torch.arange(energy.shape[0]) + 0.5) * DETAIL_CELL
        xs = (torch.arange(energy.shape[1]) + 0.5) * DETAIL_CELL
        inside = (((ys >= low[1]) & (ys <= high[1]))[:, None] & ((xs >= low[0]) & (xs <= high[0]))[None, :])
        weights = (energy.clamp_min(1e-12) ** self.detail_bias * inside).flatten().double().numpy()
        if weights.sum() <= 0:
            return None
        cell = rng.choice(weights.size, p=weights / weights.sum())
        jitter = rng.uniform(-0.5, 0.5, 2) * DETAIL_CELL
        centre = np.array([xs[cell % energy.shape[1]], ys[cell // energy.shape[1]]]) + jitter
        return np.clip(centre, low, high)

    def __len__(self) -> int:
        return self.length

    def _path(self, rng: np.random.Generator, size: tuple[int, int], side: float,
              detail: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Affine matrices of one moving view (camera or object) at every shutter sample of every frame; the
        view's centre is drawn uniformly, or aimed at detail (`detail`: the source's `detail_map`)."""
        width, height = size
        margin = side * 0.75  # room for the motion of a clip; a photo with less is viewed from its centre
        low = np.array([margin if width > 2 * margin else width / 2, margin if height > 2 * margin else height / 2])
        high = np.array([width, height]) - low
        centre = None if detail is None else self._detailed_centre(rng, detail, side, low, high)
        if centre is None:
            centre = np.array([rng.uniform(low[0], high[0]) if width > 2 * margin else width / 2,
                               rng.uniform(low[1], high[1]) if height > 2 * margin else height / 2])
        velocity = rng.normal(0.0, 1.0, 2) * side / self.crop  # photo pixels per frame
        zoom, angle, turn = rng.uniform(-0.02, 0.02), rng.uniform(-0.1, 0.1), rng.uniform(-0.007, 0.007)
        matrices = []
        for t in range(self.frames):
            for k in range(self.shutter_samples):
                time = t + 0.5 * k / self.shutter_samples
                matrices.append(_affine(centre + velocity * time, side * (1 + zoom) ** time, angle + turn * time,
                                        size))
        return matrices

    def _render(self, source: torch.Tensor, matrices: list[torch.Tensor], size: int) -> torch.Tensor:
        """Sample (N, 3, size, size) views of `source` (float (3, H, W), `_source`) with bilinear interpolation."""
        theta = torch.stack(matrices)
        grid = F.affine_grid(theta, [len(matrices), 3, size, size], align_corners=False)
        source = source[None].expand(len(matrices), -1, -1, -1)
        return F.grid_sample(source, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng((self.seed, index))
        photo = rng.integers(len(self.photos))
        height, width = self.photos[photo].shape[1:]
        field = self.crop * math.exp(rng.uniform(0.0, math.log(min(self.max_field, min(height, width) / self.crop))))
        factor = 2 ** min(3, int(math.log2(field / self.crop)))  # pre-filter what bilinear sampling would alias
        view = field / factor  # the field in pixels of the pre-filtered photo
        detail = self.detail_map(photo, factor) if self.detail_bias else None
        views = self._render(self._source(photo, factor),
                             self._path(rng, (width // factor, height // factor), view, detail), self.crop)
        for _ in range(rng.integers(1, 3) if rng.random() < 0.5 else 0):
            other_index = rng.integers(len(self.photos))
            other = self.photos[other_index]
            radius = rng.uniform(0.15, 0.4)  # of the crop
            size = round(2 * radius * self.crop)  # a rigid object: one still view of `other`, moved below
            centre = np.array([rng.uniform(0, other.shape[2]), rng.uniform(0, other.shape[1])])
            # An object spans 2 * radius * view pixels of an unfiltered photo up to a 2x shrink (as runs with the
            # default field were trained), of one pre-filtered like the scene's beyond it.
            o = factor if factor >= 4 else 1
            patch = self._render(self._source(other_index, o), [_affine(
                centre / o, 2 * radius * view, 0.0, (other.shape[2] // o, other.shape[1] // o))], size)[0]
            ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
            aspect = rng.uniform(0.6, 1.0)
            mask = (1 - (xs ** 2 + (ys / aspect) ** 2)).clamp(0, 0.1) * 10  # soft elliptical edge
            start = rng.uniform(0, self.crop - size, 2)
            velocity = rng.normal(0.0, 1.5, 2)  # crop pixels per frame, independent of the camera
            times = [n // self.shutter_samples + 0.5 * (n % self.shutter_samples) / self.shutter_samples
                     for n in range(len(views))]
            theta = torch.tensor([[self.crop / size, 0, 0], [0, self.crop / size, 0]],
                                 dtype=torch.float32).repeat(len(views), 1, 1)
            theta[:, :, 2] = torch.tensor(np.stack([(self.crop / 2 - (start + velocity * time) - size / 2) / size * 2
                                                    for time in times]), dtype=torch.float32)
            grid = F.affine_grid(theta, [len(views), 4, self.crop, self.crop], align_corners=False)
            placed = F.grid_sample(torch.cat([patch * mask, mask[None]])[None].expand(len(views), -1, -1, -1), grid,
                                   align_corners=False)
            views = views * (1 - placed[:, 3:]) + placed[:, :3]
        clip = views.unflatten(0, (self.frames, self.shutter_samples)).mean(dim=1)  # motion blur
        drift = 1 + rng.uniform(-0.015, 0.015) * torch.arange(self.frames, dtype=torch.float32)
        clip = clip * drift[:, None, None, None]
        clip = clip + torch.from_numpy(rng.normal(0.0, rng.uniform(0, 2) / 255, clip.shape).astype(np.float32))
        return torch.round(clip.clamp(0, 1) * 255) / 255


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Assemble the offline photo collection for training.")
    parser.add_argument("out", type=Path, help="folder for the photos (created)")
    args = parser.parse_args(argv)
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        parser.error("apt-get and dpkg are needed (a Debian or Ubuntu system)")
    count = prepare(args.out)
    print(f"wrote {count} photos to {args.out} (sources in {args.out / 'SOURCES.csv'})")


if __name__ == "__main__":
    main()
