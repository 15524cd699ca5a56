"""Bouncing balls: the DSAE paper's claim (3) as a codec measurement, and the generation check.

    python benchmarks/balls.py                      # ~10 min on 2 cores
    python benchmarks/balls.py --quick              # 2 clips of 16 frames, 4 samples (a smoke test)
    python benchmarks/balls.py --model dsae=run.pt  # a training run instead of the shipped dsae-balls

1. Sequence length. The rate-distortion benchmark's balls set (test-split clips of 100 frames, 32x32) is coded
   through real .dsae bytes by dsae-balls, rnn-balls and frame-balls with segments of T = 8, 32 and 100 frames.
   Segments are coded independently: the DSAE sends one f per segment, and both recurrent priors (the DSAE's
   stochastic p(z_t | z_<t), the RNN's deterministic state driven by its decoded latents) restart. Per T: each
   codec's curve, its bits per frame interpolated at one common PSNR, and the BD-rates (PSNR) of dsae vs rnn and
   vs frame. Claim (3) says the stochastic model's advantage grows with T.
2. Generation. Sequences of 100 frames drawn from each model's own priors (highest quality; the frame VAE draws
   every frame independently, it has no temporal prior) are scored by the plausibility judge below, next to the
   judge's score of the real test clips (its reference: what the physics itself scores) and of their decodes.

Plausibility judge. A frame's balls are the connected regions of pixels brighter than half (max over RGB >= 128)
of at least MIN_AREA pixels, each with an intensity-weighted centroid, an area and a mean colour. Frame t >= 1 of
a sequence is plausible when
  - count: it holds the sequence's usual number of balls (the most frequent count; at least one);
  - size: its areas, sorted, are each within +-35% of the median sorted areas of the frames with that count;
  - continuity: each ball has a ball of frame t-1 of the same colour (every RGB mean within 0.25) at most
    MAX_STEP pixels away: twice the data's top speed (0.05 box widths per frame; an elastic collision can at
    most double a ball's speed) plus one pixel;
  - motion: the balls moved (mean step >= 0.2 px; the simulated balls never stand still).
Why these four: the simulator conserves the number of balls, their radii and their colours, and moves them
continuously at bounded, non-zero speed. The ways a learned prior fails over long horizons (balls that fade,
merge, split, change colour, teleport or freeze) each break one of them. Touching balls merge into one region
for a frame or two, so even real clips score below 100%. Per sequence the score is the fraction of plausible
frames.

Writes results/balls.json and results/balls_samples.png (frames 0, 10, ..., 90 of the first sample per model).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

warnings.filterwarnings("ignore", category=FutureWarning)
sys.path.insert(0, str(Path(__file__).parent))

import rate_distortion as rd  # noqa: E402

from dsaecodec import codec, zoo  # noqa: E402
from dsaecodec.metrics import bd_rate  # noqa: E402
from dsaecodec.priors import codec_threads  # noqa: E402

CODECS = ("dsae", "rnn", "frame")
LENGTHS = (8, 32, 100)  # segment lengths T
SAMPLE_FRAMES = 100
MIN_AREA = 2  # pixels: smaller bright regions are noise, not balls
SIZE_TOLERANCE = 0.35
COLOUR_TOLERANCE = 0.25
TOP_SPEED = 0.05  # box widths per frame: the fastest ball of dsaecodec.data.balls.initial_state
MIN_MEAN_STEP = 0.2  # pixels per frame


def find_balls(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 (H, W, 3) -> (centroids (K, 2) in pixels (x, y), areas (K,) in pixels, colours (K, 3) in [0, 1])."""
    value = frame.max(axis=-1).astype(np.float64) / 255
    labels, count = ndimage.label(value >= 0.5)
    index = np.arange(1, count + 1)
    areas = ndimage.sum(np.ones_like(value), labels, index)
    keep = index[areas >= MIN_AREA]
    ys, xs = np.indices(value.shape)
    weight = ndimage.sum(value, labels, keep)
    centroids = np.stack([ndimage.sum(value * xs, labels, keep), ndimage.sum(value * ys, labels, keep)], axis=1)
    colours = np.stack([ndimage.mean(frame[..., c] / 255, labels, keep) for c in range(3)], axis=1)
    return (centroids / weight[:, None] if len(keep) else np.zeros((0, 2)), areas[areas >= MIN_AREA],
            colours.reshape(-1, 3))


def judge(clip: np.ndarray) -> dict[str, float]:
    """Plausibility of one uint8 (T, S, S, 3) sequence: the rate of each check over frames 1..T-1 and `score`,
    the rate of frames that pass all four."""
    max_step = 2 * TOP_SPEED * clip.shape[1] + 1
    balls = [find_balls(frame) for frame in clip]
    counts = np.array([len(areas) for _, areas, _ in balls])
    reference = np.bincount(counts).argmax()  # the sequence's usual ball count (a merge lasts a frame or two)
    reference_areas = np.median([np.sort(areas) for _, areas, _ in balls if len(areas) == reference], axis=0)
    checks: dict[str, list[bool]] = {"count": [], "size": [], "continuity": [], "motion": []}
    for (previous, _, previous_colours), (centroids, areas, colours) in zip(balls, balls[1:]):
        count = len(areas) == reference > 0
        size_ok = count and bool(np.all(np.abs(np.sort(areas) / reference_areas - 1) <= SIZE_TOLERANCE))
        continuity = motion = False
        if len(centroids) and len(previous):
            distance = np.linalg.norm(centroids[:, None] - previous[None], axis=-1)  # (K_t, K_t-1)
            same_colour = np.all(np.abs(colours[:, None] - previous_colours[None]) <= COLOUR_TOLERANCE, axis=-1)
            continuity = bool(np.all(np.any(same_colour & (distance <= max_step), axis=1)))
            rows, columns = linear_sum_assignment(distance)
            motion = bool(distance[rows, columns].mean() >= MIN_MEAN_STEP)
        for name, value in zip(checks, (count, size_ok, continuity, motion)):
            checks[name].append(value)
    plausible = np.all([checks[name] for name in checks], axis=0)
    return {**{name: float(np.mean(values)) for name, values in checks.items()}, "score": float(plausible.mean())}


def judged(clips: list[np.ndarray]) -> dict[str, float]:
    """`judge` averaged over sequences."""
    scores = [judge(clip) for clip in clips]
    return {name: float(np.mean([s[name] for s in scores])) for name in scores[0]}


def at_psnr(curve: list[dict], target: float) -> float | None:
    """Bits per frame of a curve at `target` dB (log-linear between its points); None outside its range."""
    curve = sorted(curve, key=lambda row: row["psnr"])
    psnrs = [row["psnr"] for row in curve]
    if not psnrs[0] <= target <= psnrs[-1]:
        return None
    return float(np.exp(np.interp(target, psnrs, [np.log(row["bits_per_frame"]) for row in curve])))


def length_table(models: dict[str, tuple[str, str | None]], lengths: tuple[int, ...], quick: bool,
                 jobs: int) -> dict:
    """Code the balls set at every segment length: curves, bits per frame at a common PSNR, BD-rates per T."""
    tasks = [rd.Task("balls", name, model, weights, None, quick, length)
             for length in lengths for name, (model, weights) in models.items()]
    results = rd.run_tasks(tasks, max(1, min(jobs, len(tasks))))
    curves: dict[int, dict[str, list[dict]]] = {}
    for task, (points, _, _) in zip(tasks, results):
        curves.setdefault(task.segment_length, {})[task.codec] = rd.averaged(points)[("balls", task.codec)]
    ranges = [(min(r["psnr"] for r in c), max(r["psnr"] for r in c)) for by in curves.values() for c in by.values()]
    low, high = max(r[0] for r in ranges), min(r[1] for r in ranges)
    common = (low + high) / 2 if low <= high else float(np.median([r["psnr"] for by in curves.values()
                                                                   for c in by.values() for r in c]))
    rows = []
    for length, by_codec in curves.items():
        row = {"segment_length": length, "psnr": common,
               "bits_per_frame": {name: at_psnr(curve, common) for name, curve in by_codec.items()}}
        for anchor in ("rnn", "frame"):
            if "dsae" in by_codec and anchor in by_codec:
                a, t = by_codec[anchor], by_codec["dsae"]
                value = bd_rate([r["bpp"] for r in a], [r["psnr"] for r in a], [r["bpp"] for r in t],
                                [r["psnr"] for r in t])
                row[f"dsae_vs_{anchor}_bd_rate_percent"] = None if np.isnan(value) else value
        rows.append(row)
    return {"curves": {str(length): by for length, by in curves.items()}, "rows": rows}


@torch.no_grad()
def generation(models: dict[str, tuple[str, str | None]], samples: int, frames: int,
               quick: bool) -> tuple[dict, dict[str, list[np.ndarray]]]:
    """(plausibility of the real test clips, and per model of their decodes and of sequences sampled from its
    priors; the sampled uint8 (T, S, S, 3) sequences per model)."""
    clips = [frames_of for _, frames_of, _ in rd.SETS["balls"].load(quick)]
    result = {"real": judged(clips)}
    drawn = {}
    for name, (model_name, _) in models.items():  # registered by main; only coding tasks run elsewhere
        model, _ = codec.loaded_model(model_name)
        top = model.qualities - 1
        shape = model.latent_shape(*clips[0].shape[1:3])
        decoded = [codec.decode(codec.encode(clip, model_name=model_name, quality=top, segment_length=len(clip)))
                   for clip in clips]
        rng = np.random.default_rng(0)
        with codec_threads():
            drawn[name] = [codec.to_frames(model.sample(frames, top, shape, rng), *clips[0].shape[1:3])
                           for _ in range(samples)]
        result[name] = {"decoded": judged(decoded), "sampled": judged(drawn[name])}
    return result, drawn


def plot_samples(drawn: dict[str, list[np.ndarray]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = list(range(0, len(next(iter(drawn.values()))[0]), 10))
    figure, axes = plt.subplots(len(drawn), len(columns), figsize=(1.2 * len(columns), 1.3 * len(drawn)),
                                squeeze=False)
    for row, (name, sequences) in zip(axes, drawn.items()):
        for axis, t in zip(row, columns):
            axis.imshow(sequences[0][t])
            axis.set_xticks([]), axis.set_yticks([])
            axis.set_title(f"{name} t={t}" if t == 0 else f"t={t}", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def print_report(lengths: dict, plausibility: dict) -> None:
    rows = lengths["rows"]
    names = list(rows[0]["bits_per_frame"])
    print(f"\nbits per frame at {rows[0]['psnr']:.2f} dB PSNR (interpolated; n/a: outside the curve), and BD-rates:")
    print(f"{'T':>4} " + " ".join(f"{name:>8}" for name in names) + f" {'dsae vs rnn':>12} {'dsae vs frame':>14}")

    def shown(value: float | None, form: str) -> str:
        """`value` formatted, "n/a" for None; a form ending in % formats a percentage."""
        if value is None:
            return "n/a"
        return format(value, form[:-1]) + "%" if form.endswith("%") else format(value, form)

    for row in rows:
        print(f"{row['segment_length']:>4} " + " ".join(f"{shown(row['bits_per_frame'][n], '.1f'):>8}" for n in names)
              + f" {shown(row.get('dsae_vs_rnn_bd_rate_percent'), '+.1f%'):>12}"
              + f" {shown(row.get('dsae_vs_frame_bd_rate_percent'), '+.1f%'):>14}")
    print("\nplausibility (fraction of frames passing each check; score: all four at once)")
    print(f"{'sequences':<18} {'count':>6} {'size':>6} {'contin.':>7} {'motion':>6} {'score':>6}")
    entries = [("real test clips", plausibility["real"])]
    for name, value in plausibility.items():
        if name != "real":
            entries += [(f"{name} decoded", value["decoded"]), (f"{name} sampled", value["sampled"])]
    for label, value in entries:
        print(f"{label:<18} {value['count']:>6.2f} {value['size']:>6.2f} {value['continuity']:>7.2f} "
              f"{value['motion']:>6.2f} {value['score']:>6.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="CODEC=NAME",
                        help=f"shipped model NAME or a weights file for CODEC (one of {', '.join(CODECS)}; default "
                             "CODEC-balls); repeatable")
    parser.add_argument("--codecs", default=",".join(CODECS), help="comma-separated subset of the learned codecs")
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)), help="comma-separated segment lengths")
    parser.add_argument("--samples", type=int, default=16, help="sequences sampled per model")
    parser.add_argument("--quick", action="store_true", help="2 clips of 16 frames, 4 samples of 16 frames")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)), help="processes for the coding")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    args = parser.parse_args(argv)

    models = {name: (f"{name}-balls", None) for name in args.codecs.split(",") if name}
    for name in models:
        if name not in CODECS:
            parser.error(f"unknown codec {name!r}")
    for option in args.model:
        try:
            name, model_name, path = rd.model_option(option, tuple(models))
        except (ValueError, zoo.UnknownModelError) as error:
            parser.error(str(error))
        models[name] = (model_name, path)
    for name, (model_name, _) in models.items():
        if model_name not in zoo.MODELS:
            parser.error(f"no model {model_name} (train one, or pass --model {name}=run.pt)")
    lengths = tuple(int(t) for t in args.lengths.split(","))
    samples, frames = (4, 16) if args.quick else (args.samples, SAMPLE_FRAMES)

    table = length_table(models, lengths, args.quick, args.jobs)
    plausibility, drawn = generation(models, samples, frames, args.quick)
    print_report(table, plausibility)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"command": " ".join(["python", "benchmarks/balls.py"] + (argv if argv is not None else sys.argv[1:])),
              "set": rd.SETS["balls"].description,
              "models": {name: {"model": m, "sha256": zoo.MODELS[m].sha256} for name, (m, _) in models.items()},
              "lengths": table, "plausibility": plausibility, "sampled_frames": frames, "samples": samples}
    (args.out / "balls.json").write_text(json.dumps(result, indent=1))
    plot_samples(drawn, args.out / "balls_samples.png")
    print(f"\nwrote {args.out}/balls.json, balls_samples.png")


if __name__ == "__main__":
    main()
