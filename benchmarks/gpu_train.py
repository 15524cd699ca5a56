"""Train one recipe on one GPU inside a wall-clock budget: the prepared script for a lent GPU machine.

    python benchmarks/gpu_train.py --minutes 8 --out OUT -- --dataset sprites --global-latents --batch 64 ...

Everything after `--` is passed to `dsaecodec train` (`--device cuda` is added unless given). The script
first runs `--probe-steps` steps of that recipe (train.py reports their pace without the first steps'
compilation; the rest of the probe's time bounds the final run's start-up and last write), then picks `--steps`
so that the run, its validation passes and the final table building fit in `--minutes` (the cosine schedule then
spans the whole run), trains, and leaves in OUT the weights (OUT/NAME.pt), the learning curve (NAME.csv), the log
(NAME.log) and a summary (NAME.json: recipe, probe speed, steps, seconds). `--name` sets NAME (default: gpu-run).
Several recipes can share one GPU: start one script per recipe, each with its own NAME, at the same time; each
probe then runs beside the others, as its training will.

On this project's lent machine (no network; Python 3.12 without constriction or scikit-video),
carry the wheels that `benchmarks/gpu_wheels.sh` downloads into .whl/, and run from the repository root:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
    PYTHONPATH=/tmp/site:. python3 benchmarks/gpu_train.py --minutes 8 --out $OUT -- --dataset sprites ...

Tested on the CPU with `--device cpu` and a few steps (tests/test_benchmarks.py).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIXED_SECONDS = 45  # validation passes and the final table building, on top of the timed steps and start-up


def run_training(train_args: list[str], log_path: Path) -> float:
    """Run `dsaecodec train` in a fresh process, its output appended to `log_path`; returns the wall seconds."""
    started = time.perf_counter()
    with open(log_path, "a") as log:
        log.write(f"$ dsaecodec train {' '.join(train_args)}\n")
        log.flush()
        result = subprocess.run([sys.executable, "-m", "dsaecodec.train", *train_args], stdout=log,
                                stderr=subprocess.STDOUT)
    if result.returncode:
        raise SystemExit(f"training failed (exit {result.returncode}); see {log_path}")
    return time.perf_counter() - started


def probe_pace(log: str) -> float:
    """Seconds per step from the last `training speed: ... (N ms per step ...)` line of a `dsaecodec train` log
    (train.py times the steps after its WARMUP_STEPS, i.e. without compilation and first allocations)."""
    paces = re.findall(r"training speed: .*\(([0-9.]+) ms per step", log)
    if not paces:
        raise SystemExit("the probe reported no training speed (too few --probe-steps?)")
    return max(float(paces[-1]), 0.5) / 1000  # printed in whole milliseconds: "0 ms" is under half of one


def steps_within(seconds_left: float, seconds_per_step: float) -> int:
    """The most steps (at least 1) that `seconds_left` holds at `seconds_per_step`, after FIXED_SECONDS."""
    return max(1, math.floor((seconds_left - FIXED_SECONDS) / seconds_per_step))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    own, train_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget of the whole script")
    parser.add_argument("--out", type=Path, required=True, help="folder for weights, curve, log and summary")
    parser.add_argument("--name", default="gpu-run", help="file stem of what is written (default: %(default)s)")
    parser.add_argument("--probe-steps", type=int, default=40, help="steps timed before choosing --steps")
    args = parser.parse_args(own)
    if args.probe_steps < 5:
        parser.error("--probe-steps must be at least 5 (train.py leaves its first steps out of its pace)")
    if any(arg.split("=")[0] in ("--out", "--steps", "--resume", "--stop-after") for arg in train_args):
        parser.error("the recipe after -- must leave --out, --steps, --resume and --stop-after to this script")
    if not any(arg.split("=")[0] == "--device" for arg in train_args):
        train_args = [*train_args, "--device", "cuda"]
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / f"{args.name}.log"
    log_path.unlink(missing_ok=True)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory() as probe:  # one probe: the steady pace, and what a run costs besides
        probe_seconds = run_training([*train_args, "--out", f"{probe}/probe.pt", "--steps", str(2 * args.probe_steps),
                                      "--stop-after", str(args.probe_steps), "--validate-every", "0"], log_path)
    per_step = probe_pace(log_path.read_text())
    # start-up, the first compilation and the last write: the final run's are no longer (its compile cache is warm)
    overhead = max(0.0, probe_seconds - args.probe_steps * per_step)
    left = args.minutes * 60 - (time.perf_counter() - started) - overhead
    steps = steps_within(left, per_step)
    print(f"probe: {per_step:.3f} s/step, {overhead:.0f} s besides; training {steps} steps in the {left:.0f} s left")

    weights = args.out / f"{args.name}.pt"
    seconds = run_training([*train_args, "--out", str(weights), "--steps", str(steps)], log_path)
    weights.with_name(weights.name + ".ckpt").unlink(missing_ok=True)  # over the 16 MiB a returned file may have
    summary = {"recipe": train_args, "probe_seconds_per_step": round(per_step, 4),
               "probe_overhead_seconds": round(overhead, 1), "steps": steps, "training_seconds": round(seconds, 1),
               "total_seconds": round(time.perf_counter() - started, 1)}
    (args.out / f"{args.name}.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
