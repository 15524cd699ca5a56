"""Plot the learning curves that `dsaecodec train` writes next to its weights (OUT.csv).

    python benchmarks/learning_curves.py run.csv [other.csv ...] --out curves.png

Two panels, PSNR of the decoded validation clips and their real coded bits per pixel, against the
training step, one line per run and quality level. Also prints the last pass of
each run, so that recipe choices can be read off the curves, not off one end point.
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path


def read_curve(path: Path) -> dict[int, list[tuple[int, float, float]]]:
    """quality -> [(step, coded_bpp, psnr), ...] in step order."""
    curve: dict[int, list[tuple[int, float, float]]] = defaultdict(list)
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            curve[int(row["quality"])].append((int(row["step"]), float(row["coded_bpp"]), float(row["psnr"])))
    return {q: sorted(points) for q, points in sorted(curve.items())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("curves", nargs="+", type=Path, help="learning-curve CSV files (OUT.csv of dsaecodec train)")
    parser.add_argument("--out", type=Path, default=Path("learning_curves.png"), help="the plot (PNG)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.curves if not p.is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    try:
        curves = {path: read_curve(path) for path in args.curves}
    except (KeyError, ValueError, TypeError) as error:
        parser.error(f"not a learning curve of dsaecodec train ({error})")
    empty = [str(path) for path, curve in curves.items() if not curve]
    if empty:
        parser.error(f"no validation pass in {', '.join(empty)}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (psnr_axis, bpp_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for path, curve in curves.items():
        for quality, points in curve.items():
            steps, bpp, psnr = zip(*points)
            label = f"{path.stem} q{quality}"
            psnr_axis.plot(steps, psnr, marker=".", label=label)
            bpp_axis.plot(steps, bpp, marker=".", label=label)
        last = max(points[-1][0] for points in curve.values())
        summary = ", ".join(f"q{q} {p[-1][2]:.2f} dB @ {p[-1][1]:.4f} bpp" for q, p in curve.items())
        print(f"{path}: step {last}: {summary}")
    psnr_axis.set(xlabel="step", ylabel="PSNR (dB)", title="validation PSNR")
    bpp_axis.set(xlabel="step", ylabel="coded bits per pixel", title="validation rate")
    for axis in (psnr_axis, bpp_axis):
        axis.grid(alpha=0.3)
    bpp_axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp.png")
    figure.savefig(tmp, dpi=110)
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
