"""Files that decode on any machine: every shipped model's files decoded under every CPU kernel choice.

    python benchmarks/portability.py                              # every shipped model, ~8 min on 2 cores
    python benchmarks/portability.py --models dsae-natural --kernels default,sse41 --quick
    python benchmarks/portability.py --models rnn-sprites,checkpoints/run/run.pt   # a training run's weights too

PyTorch and oneDNN pick CPU kernels by instruction set, and forcing the choice another CPU would make reproduces
that machine here. Each model codes the clips its geometry takes (natural models: carphone, 120 frames, bikes'
held-out centre, 64 frames at 320x176, and a test-split sprites clip, 8 frames at 64x64; sprites models: two
sprites clips; balls models: two balls clips; the clips of benchmarks/rate_distortion.py) at a fractional quality
(interpolated gains), in this process. Then one fresh process per kernel choice decodes every file, recording a
digest of each entropy coder's calls (the scale indices or pmfs it was given and the symbols it decoded: equal
digests mean equal latents) and keeping the frames. The table compares each choice with the default one: `same`
(latents and frames identical), `latents same, frames <= k levels (p%)` (the float synthesis rounds otherwise; p is
the share of pixel values that differ), `LATENTS DIFFER`, or the error. Exit status 1 if any latents differ or any
decode fails.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

# name -> (environment, in-process settings): the kernel choices of the portability issue on an x86 CPU
KERNELS = {
    "default": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx": {"ONEDNN_MAX_CPU_ISA": "AVX"},
    "sse41": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "no-mkldnn": {},
    "2 threads": {},
}

# Each entropy coder's calls hashed, one hash per coder object (a payload), in a form the encoder and the decoder
# share: scale indices then symbols; pmf, count then symbols. A file's streams compare as a sorted list of those
# hashes (the DSAE decodes z before f). argv[1]: the kernel choice's name; weights files that are not shipped are
# registered from the environment (PORTABILITY_WEIGHTS, os.pathsep-separated).
RECORDING = """
import hashlib, json, os, sys
import numpy as np, torch
if sys.argv[1] == "no-mkldnn":
    torch.backends.mkldnn.enabled = False
if sys.argv[1] == "2 threads":
    torch.set_num_threads(2)
from bitstream import coder
from dsaecodec import codec, zoo
for weights in filter(None, os.environ.get("PORTABILITY_WEIGHTS", "").split(os.pathsep)):
    zoo.register_weights_file(weights)
hashes = {}
def note(owner, *values):
    digest = hashes.setdefault(id(owner), (owner, hashlib.sha256()))[1]
    for value in values:
        value = np.asarray(value)
        digest.update(np.ascontiguousarray(value, dtype=np.float64 if value.dtype.kind == "f" else np.int64).tobytes())
def streams():
    found = sorted(digest.hexdigest() for owner, digest in hashes.values())
    hashes.clear()
    return found
"""

# argv[2]: a folder for the frames (.npy per file) or "-" for none; argv[3:]: the files. Prints per file its streams'
# digests and the frames' sha256, or the error.
DECODE_SCRIPT = RECORDING + """
gaussian, categorical = coder.SymbolDecoder.gaussian, coder.SymbolDecoder.categorical
def decode_gaussian(self, index):
    symbols = gaussian(self, index)
    note(self, index, symbols)
    return symbols
def decode_categorical(self, pmf, count):
    symbols = categorical(self, pmf, count)
    note(self, pmf, [count], symbols)
    return symbols
coder.SymbolDecoder.gaussian, coder.SymbolDecoder.categorical = decode_gaussian, decode_categorical
symbols, frames, errors = {}, {}, {}
for path in sys.argv[3:]:
    try:
        decoded = codec.decode(open(path, "rb").read())
    except Exception as error:
        errors[path] = f"{type(error).__name__}: {error}"[:200]
        hashes.clear()
        continue
    symbols[path], frames[path] = streams(), hashlib.sha256(decoded.tobytes()).hexdigest()
    if sys.argv[2] != "-":
        np.save(f"{sys.argv[2]}/{path.rsplit('/', 1)[-1]}.npy", decoded)
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "symbols": symbols, "frames": frames,
                  "errors": errors}))
"""


def run_in_process(script: str, kernels: str, paths: list[Path], frames_folder: Path | None = None,
                   weights: list[Path] = ()) -> dict:
    """`script` (DECODE_SCRIPT, or another built on RECORDING that reads the same arguments) in a fresh process
    under the kernel choice `kernels`, with the weights files `weights` registered; its JSON result."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), **KERNELS[kernels],
           "PORTABILITY_WEIGHTS": os.pathsep.join(map(str, weights))}
    result = subprocess.run([sys.executable, "-c", script, kernels, str(frames_folder or "-"), *map(str, paths)],
                            env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"{kernels}: {result.stderr[-2000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def shipped_clips(model_name: str, quick: bool) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 (T, H, W, 3)) clips that the shipped model's geometry takes: for a natural model carphone,
    bikes' centre and a sprites clip, for a sprites or balls model (64x64 or 32x32 frames only) two of its clips."""
    from rate_distortion import SETS

    for domain, sets in (("balls", {"balls": 2}), ("sprites", {"sprites": 2}),
                         ("natural", {"carphone": 1, "bikes": 1, "sprites": 1})):
        if f"-{domain}" in model_name:
            return [(name, frames) for set_name, count in sets.items()
                    for name, frames, _ in SETS[set_name].load(quick)[:count]]
    raise ValueError(f"{model_name}: no clips for its domain")


def compare(default: np.ndarray, other: np.ndarray) -> str:
    """How far decoded frames are from the default decode's."""
    if np.array_equal(default, other):
        return "same"
    difference = np.abs(default.astype(np.int16) - other.astype(np.int16))
    share = 100 * np.count_nonzero(difference) / difference.size
    return f"latents same, frames <= {int(difference.max())} levels ({share:.3f}%)"


def main() -> int:
    from dsaecodec import codec, zoo

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(zoo.MODELS),
                        help="comma-separated shipped models or weights files (.pt)")
    parser.add_argument("--kernels", default=",".join(KERNELS), help=f"comma-separated, of {', '.join(KERNELS)}")
    parser.add_argument("--quality", type=float, default=2.5)
    parser.add_argument("--quick", action="store_true", help="16 frames of each natural clip")
    args = parser.parse_args()
    kernels = args.kernels.split(",")
    if "default" not in kernels:
        kernels.insert(0, "default")
    with tempfile.TemporaryDirectory() as folder:
        files = {}  # path -> (model, clip)
        models = args.models.split(",")
        weights = [Path(model) for model in models if model.endswith(".pt")]
        try:
            clips = {name: shipped_clips(name, args.quick) for name in map(zoo.resolve, models)}
        except (ValueError, zoo.UnknownModelError) as error:
            parser.error(str(error))  # one line, exit status 2
        for model_name, model_clips in clips.items():
            for clip_name, frames in model_clips:
                path = Path(folder) / f"{model_name}.{clip_name}.dsae"
                path.write_bytes(codec.encode(frames, model_name=model_name, quality=args.quality))
                files[str(path)] = (model_name, clip_name, len(frames), frames.shape[1:3])
            print(f"encoded {model_name}", file=sys.stderr)
        results = {}
        for name in kernels:
            (Path(folder) / name).mkdir()
            results[name] = run_in_process(DECODE_SCRIPT, name, list(files), Path(folder) / name, weights)
            print(f"decoded under {name} (torch's CPU capability {results[name]['capability']})", file=sys.stderr)
        failures = 0
        print(f"| model | clip | {' | '.join(name for name in kernels if name != 'default')} |")
        print(f"|---|---|{'---|' * (len(kernels) - 1)}")
        for path, (model_name, clip_name, count, size) in files.items():
            cells = []
            for name in kernels[1:]:
                result, reference = results[name], results["default"]
                if path in result["errors"] or path in reference["errors"]:
                    cells.append(f"ERROR {result['errors'].get(path) or reference['errors'][path]}")
                elif result["symbols"][path] != reference["symbols"][path]:
                    cells.append("LATENTS DIFFER")
                else:
                    file = Path(path).name + ".npy"
                    cells.append(compare(np.load(Path(folder) / "default" / file), np.load(Path(folder) / name / file)))
                failures += cells[-1].startswith(("ERROR", "LATENTS"))
            print(f"| {model_name} | {clip_name} ({count} frames, {size[1]}x{size[0]}) | {' | '.join(cells)} |")
        capabilities = ", ".join(f"{name}: {result['capability']}" for name, result in results.items())
        print(f"\ntorch's CPU capability per choice: {capabilities}; quality {args.quality:g}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
