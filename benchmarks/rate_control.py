"""How closely `--bitrate` meets its target: targets spread between a model's lowest and highest quality's rates.

    python benchmarks/rate_control.py                         # carphone, dsae-natural, 3 targets
    python benchmarks/rate_control.py --sets carphone,bikes --model dsae-natural --targets 5

Per clip, the clip is coded at the lowest and the highest quality level (through the real bitstream); then at
`--targets` bitrates spaced evenly in log-rate strictly between those two rates (the i-th of n at
low * (high / low) ** (i / (n + 1))), each as `dsaecodec encode --bitrate` does (`codec.Target`). It reports the
file's bitrate (every byte of the .dsae file) against the target, the segment qualities chosen, the PSNR and the
encoding time relative to one fixed-quality encode in the same run. Writes results/rate_control.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rate_distortion import SETS  # noqa: E402

from bitstream.format import QUALITY_STEPS, BitstreamReader  # noqa: E402
from dsaecodec import codec, zoo  # noqa: E402
from dsaecodec.metrics import psnr  # noqa: E402


def coded(frames: np.ndarray, fps, model_name: str, **options) -> dict:
    """Encode + decode one clip; its kbit/s over the whole file, PSNR, segment qualities and encode seconds."""
    start = time.perf_counter()
    data = codec.encode(frames, fps=fps, model_name=model_name, **options)
    seconds = time.perf_counter() - start
    reader = BitstreamReader(data)
    qualities = [reader.segment_quality(k) / QUALITY_STEPS for k in range(len(reader))]
    return {"kbit_per_s": 8 * len(data) * float(fps) / len(frames) / 1000, "psnr": psnr(frames, codec.decode(data)),
            "qualities": [min(qualities), max(qualities)], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="carphone", help="comma-separated test sets of rate_distortion.py")
    parser.add_argument("--model", default=zoo.DEFAULT_MODEL, help="shipped model name or weights file")
    parser.add_argument("--targets", type=int, default=3, help="bitrate targets between the extreme levels")
    parser.add_argument("--out", type=Path, default=Path("results/rate_control.json"))
    args = parser.parse_args()
    model_name = zoo.resolve(args.model)
    highest = zoo.load_model(model_name)[0].qualities - 1
    rows = []
    for set_name in args.sets.split(","):
        for clip_name, frames, fps in SETS[set_name].load(False):
            low, high = (coded(frames, fps, model_name, quality=q) for q in (0, highest))
            for i in range(1, args.targets + 1):
                kbits = low["kbit_per_s"] * (high["kbit_per_s"] / low["kbit_per_s"]) ** (i / (args.targets + 1))
                result = coded(frames, fps, model_name, target=codec.Target(bits_per_frame=kbits * 1000 / float(fps)))
                rows.append({"clip": clip_name, "target_kbit_per_s": kbits, **result,
                             "error_percent": 100 * (result["kbit_per_s"] / kbits - 1),
                             "time_vs_fixed_quality": result["seconds"] / low["seconds"]})
            print(f"{clip_name}: quality 0 {low['kbit_per_s']:.1f} kbit/s ({low['psnr']:.2f} dB), quality {highest} "
                  f"{high['kbit_per_s']:.1f} kbit/s ({high['psnr']:.2f} dB)")
    print("\n| clip | target kbit/s | file kbit/s | error | segment qualities | PSNR (dB) | encode time |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['clip']} | {row['target_kbit_per_s']:.1f} | {row['kbit_per_s']:.1f} | "
              f"{row['error_percent']:+.1f}% | {row['qualities'][0]:g}–{row['qualities'][1]:g} | {row['psnr']:.2f} | "
              f"{row['time_vs_fixed_quality']:.1f}× |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": model_name, "rows": rows}, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
