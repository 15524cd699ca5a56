"""The `dsaecodec` command: encode, decode, info, swap, generate, train, models.

Every expected failure (a bad or foreign .dsae file, an unreadable video, an existing output,
a bad option value) ends in one line on stderr and exit code 2; outputs are written atomically.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from dsaecodec.codec import Decoder
    from dsaecodec.zoo import ModelCard


def _expected_errors() -> tuple[type[BaseException], ...]:
    from bitstream.format import BitstreamError
    from dsaecodec.audio import AudioError
    from dsaecodec.cluster import ClusterError
    from dsaecodec.fileutil import OutputExistsError
    from dsaecodec.videoio import VideoError
    from dsaecodec.zoo import UnknownModelError

    return (BitstreamError, VideoError, AudioError, OutputExistsError, UnknownModelError, ClusterError, ValueError,
            OSError)


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _one_line_errors(command):
    """Turn the errors a user can cause into `dsaecodec: error: ...` and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:  # the reader left (`dsaecodec models | head`): stop quietly, as Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
            sys.exit(1)
        except _expected_errors() as error:
            click.echo(f"dsaecodec: error: {_first_line(error)}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("dsaecodec: interrupted; no output written", err=True)
            sys.exit(130)

    return wrapper


def _device(name: str) -> str:
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but PyTorch sees no CUDA device")
    return name


DEVICE_OPTION = click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
                             help="Where the networks run. A file decodes to the same latents on any CPU or GPU; "
                                  "where a model's synthesis runs in float, frames may differ by a level here and "
                                  "there between kinds of device.")
FORCE_OPTION = click.option("--force", is_flag=True, help="Overwrite the output if it exists.")
JOBS_OPTION = click.option("-j", "--jobs", type=click.IntRange(1, 256),
                           help="Worker processes coding segments in parallel, one thread each; the bytes and frames "
                                "are the same for any number. [default: every core with --device cpu, 1 with cuda]")


def _jobs(jobs: int | None, device: str) -> int:
    from dsaecodec.parallel import available_cores

    return jobs or (available_cores() if device == "cpu" else 1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dsaecodec")
def main() -> None:
    """dsaecodec: a neural video codec built on the Disentangled Sequential Autoencoder.

    \b
      dsaecodec encode clip.mp4 -o clip.dsae     compress any video FFmpeg reads
      dsaecodec decode clip.dsae                 back to clip.mp4 (or .y4m, or a PNG folder)
      dsaecodec info clip.dsae                   geometry, model and bits per frame
      dsaecodec models                           the shipped models
    """


VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".ogv",
                  ".y4m"}
"""What folder mode (`dsaecodec encode DIR -o OUTDIR`) takes for a video."""


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output .dsae file [default: INPUT with .dsae]; for a folder INPUT, the output folder "
                   "[default: INPUT-dsae]")
@click.option("-q", "--quality", type=float,
              help="Quality, 0 (fewest bits) to the model's highest level (see `dsaecodec models`); fractions such as "
                   "2.5 lie between the trained levels (steps of 1/16).  [default: 2]")
@click.option("-b", "--bitrate", metavar="RATE",
              help="Aim at this bitrate instead of a fixed quality: bits per second of video (the sound is not "
                   "counted), e.g. 150k or 1.2M. "
                   "Each segment gets the quality that meets it best (it is coded several times to find it), from "
                   "the lowest to the highest level's rate.")
@click.option("--target-psnr", type=float, metavar="DB",
              help="Aim at this PSNR in dB instead of a fixed quality, segment by segment, as --bitrate does.")
@click.option("-t", "--segment-length", type=click.IntRange(1, 1024), default=8, show_default=True,
              help="Frames per segment: one content latent f is sent per segment. The shipped models were trained on 8.")
@click.option("-m", "--model", "model_name", default="dsae-natural", show_default=True, help="Shipped model to use.")
@click.option("--no-audio", is_flag=True,
              help="Leave the sound out. By default the input's first audio stream is stored in the file (its "
                   "packets copied, or re-encoded to Opus if MP4 cannot carry its codec).")
@click.option("--ray", "ray_address", metavar="ADDRESS",
              help="Code a folder INPUT on a Ray cluster, one task per file (on one CPU; one GPU with --device cuda): "
                   "ADDRESS is auto (the cluster running here), HOST:PORT or ray://HOST:PORT, or local (a Ray "
                   "instance started for this run with --jobs CPUs [default: every core]). The tasks read the "
                   "inputs and write the outputs themselves: every node must see INPUT, the output folder and the "
                   "model's weights at the same paths (a shared file system). The files are the same as without "
                   "--ray. Needs Ray: pip install -e '.[ray]'.")
@JOBS_OPTION
@DEVICE_OPTION
@FORCE_OPTION
@_one_line_errors
def encode(input_path: Path, output: Path | None, quality: float | None, bitrate: str | None,
           target_psnr: float | None, segment_length: int, model_name: str, no_audio: bool, ray_address: str | None,
           jobs: int | None, device: str, force: bool) -> None:
    """Compress the video INPUT (anything FFmpeg reads) into a .dsae file.

    \b
    INPUT may be a folder: every video in it and its subfolders (by suffix: .mp4, .mkv, .mov, .y4m, ...) is
    coded to the same relative path under the output folder, with .dsae. A file that fails is reported and
    the others are carried on; a summary table ends the run, and the exit code is 2 if any file failed.
    Outputs that exist are skipped unless --force. With --ray the folder is coded on a Ray cluster.
    """
    if sum(option is not None for option in (quality, bitrate, target_psnr)) > 1:
        raise ValueError("give one of --quality, --bitrate and --target-psnr")
    if ray_address is not None:
        from dsaecodec.cluster import check_address

        check_address(ray_address)
        if not input_path.is_dir():
            raise ValueError(f"--ray codes a folder, and {input_path} is not one (code a single file without --ray)")
    jobs_per_file = _jobs(jobs, device)
    if ray_address is None:
        from dsaecodec.parallel import start_workers_early

        start_workers_early(jobs_per_file)  # the workers' import of torch runs beside this process's
    from dsaecodec import zoo
    from dsaecodec.codec import DEFAULT_QUALITY

    options = EncodeOptions(card=zoo.registered_card(model_name),
                            quality=DEFAULT_QUALITY if quality is None else quality,
                            bits_per_second=None if bitrate is None else _bitrate(bitrate), target_psnr=target_psnr,
                            segment_length=segment_length, audio=not no_audio, device=device,
                            jobs=jobs_per_file, force=force)
    if input_path.is_dir():
        folder = input_path.resolve()
        encode_files = (functools.partial(_encode_here, options) if ray_address is None
                        else functools.partial(_encode_on_ray, options, ray_address, jobs))
        _encode_folder(folder, output or folder.with_name(folder.name + "-dsae"), force, encode_files)
        return
    output = output or input_path.with_suffix(".dsae")
    _check_not_input(input_path, output)
    from dsaecodec.fileutil import check_output

    check_output(output, force)
    click.echo(_encode_video_file(options, input_path, output))


@dataclasses.dataclass(frozen=True)
class EncodeOptions:
    """How `encode` codes each file. It pickles, so that Ray tasks get it."""

    card: ModelCard
    quality: float
    bits_per_second: float | None  # --bitrate
    target_psnr: float | None
    segment_length: int
    audio: bool
    device: str
    jobs: int  # worker processes per file
    force: bool


@dataclasses.dataclass(frozen=True)
class FileOutcome:
    """One row of folder mode's summary table."""

    source: Path
    status: str  # "ok", "skipped" or "FAILED"
    detail: str  # the table's result column: size and time, why skipped, or the error
    line: str | None = None  # the line that reports a coded file


def _encode_video_file(options: EncodeOptions, source: Path, target: Path) -> str:
    """Encode the video file `source` into `target`; returns the line that reports it."""
    from dsaecodec import zoo
    from dsaecodec.audio import extract
    from dsaecodec.codec import Target
    from dsaecodec.videoio import VideoReader

    zoo.MODELS.setdefault(options.card.name, options.card)  # a Ray worker learns the model (or weights file) here
    with VideoReader(source) as video:
        sound = extract(source, video.start_time) if options.audio else None  # here, not in workers: same bytes
        target_rate = (Target(bits_per_frame=options.bits_per_second / video.fps) if options.bits_per_second is not None
                       else Target(psnr=options.target_psnr) if options.target_psnr is not None else None)
        return _encode_video(video, target, options.force, model_name=options.card.name, quality=options.quality,
                             target=target_rate, segment_length=options.segment_length, device=_device(options.device),
                             jobs=options.jobs, audio=sound)


def encode_file(options: EncodeOptions, source: Path, target: Path) -> FileOutcome:
    """Folder mode's work on one file, in this process or in a Ray task: code `source` into `target` (creating its
    folder); an error a user can cause is the outcome FAILED, with its message."""
    start = time.perf_counter()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        line = _encode_video_file(options, source, target)
    except _expected_errors() as error:
        return FileOutcome(source, "FAILED", _first_line(error).replace(f"{source} ", "", 1))  # the row names the file
    return FileOutcome(source, "ok", f"{line.split(': ', 1)[1].split(' (')[0]}, {time.perf_counter() - start:.1f} s",
                       line)


def _encode_video(video, output: Path, force: bool, **options) -> str:
    """Code an open VideoReader into `output` (atomically, with a progress bar); the line that reports it (its
    bits/frame and kbit/s count the video; the sound, if any, is reported apart). `options` are those of
    `codec.encode_stream`."""
    from tqdm import tqdm

    from dsaecodec.codec import encode_stream
    from dsaecodec.fileutil import atomic_output

    with atomic_output(output, force) as tmp, open(tmp, "wb") as out:
        frames, payload = 0, [0, 0]
        bar = tqdm(total=video.frame_count, unit="frame", desc="encode", disable=None, leave=False)
        for coded in encode_stream(iter(video), out, fps=video.fps, reconstructions=False, **options):
            frames += coded.segment.frame_count
            payload[0] += len(coded.segment.f_payload)
            payload[1] += len(coded.segment.z_payload)
            bar.update(coded.segment.frame_count)
        bar.close()
        out.flush()
        size = out.tell()
    sound = options.get("audio")
    if sound:  # the blob, its CRC and the bytes its size takes in the index beyond the 1 byte of no sound
        from bitstream.format import MAX_AUDIO_SIZE, write_varint

        sound_size = len(sound) + 4 + len(write_varint(len(sound), MAX_AUDIO_SIZE)) - 1
    else:
        sound_size = 0
    video_size = size - sound_size
    pixels = frames * video.width * video.height
    line = (f"{output}: {frames} frames {video.width}x{video.height}, {size} bytes, "
            f"{8 * video_size / frames:.0f} bits/frame ({8 * video_size / frames * video.fps / 1000:.1f} kbit/s, "
            f"{8 * video_size / pixels:.4f} bpp; "
            f"f {8 * payload[0] / frames:.0f} + z {8 * payload[1] / frames:.0f} bits/frame of payload)")
    if sound:
        from dsaecodec.audio import describe

        line += f", sound {len(sound)} bytes ({describe(sound)})"
    return line


def _encode_folder(folder: Path, out_folder: Path, force: bool,
                   encode_files: Callable[[list[tuple[Path, Path]]], Iterable[FileOutcome]]) -> None:
    """Folder mode of `encode`: every video under `folder` into `out_folder`, by `encode_files((source, target)
    pairs)`, which yields their outcomes in any order; failures are reported and carried on, then a summary; exit 2
    if any file failed. Output folders that this run created and left empty are removed, even on Ctrl-C."""
    if out_folder.resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"the output folder {out_folder} must not be inside the input folder {folder}")
    if out_folder.exists() and not out_folder.is_dir():
        raise NotADirectoryError(f"output folder {out_folder} is a file, not a folder")
    videos = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise ValueError(f"{folder} holds no videos ({', '.join(sorted(VIDEO_SUFFIXES))})")
    outcomes: dict[Path, FileOutcome] = {}
    to_code = []  # (source, target)
    for source in videos:
        target = out_folder / source.relative_to(folder).with_suffix(".dsae")
        if target.exists() and not force:
            outcomes[source] = FileOutcome(source, "skipped", f"{target} exists (--force overwrites)")
        else:
            to_code.append((source, target))
    new_folders = {parent for _, target in to_code for parent in target.parents
                   if parent.is_relative_to(out_folder) and not parent.exists()}
    try:
        for outcome in encode_files(to_code):
            if outcome.status == "FAILED":
                click.echo(f"dsaecodec: error: {outcome.source}: {outcome.detail}", err=True)
            else:
                click.echo(outcome.line)
            outcomes[outcome.source] = outcome
    finally:
        for new_folder in sorted(new_folders, key=lambda path: len(path.parts), reverse=True):
            if new_folder.is_dir() and not any(new_folder.iterdir()):
                new_folder.rmdir()
    rows = [outcomes[source] for source in videos]
    width = max(len(str(row.source.relative_to(folder))) for row in rows)
    click.echo(f"\n{'file'.ljust(width)}  status   result")
    for row in rows:
        click.echo(f"{str(row.source.relative_to(folder)).ljust(width)}  {row.status.ljust(7)}  {row.detail}")
    failed = [str(row.source) for row in rows if row.status == "FAILED"]
    counts = {status: sum(row.status == status for row in rows) for status in ("ok", "skipped", "FAILED")}
    click.echo(f"{counts['ok']} coded, {counts['skipped']} skipped, {counts['FAILED']} failed")
    if failed:
        click.echo(f"dsaecodec: error: {len(failed)} of {len(rows)} files failed: {', '.join(failed)}", err=True)
        sys.exit(2)


def _encode_here(options: EncodeOptions, pairs: list[tuple[Path, Path]]) -> Iterator[FileOutcome]:
    """`encode_file` of each (source, target) pair in turn, in this process."""
    return (encode_file(options, source, target) for source, target in pairs)


def _encode_on_ray(options: EncodeOptions, address: str, cpus: int | None,
                   pairs: list[tuple[Path, Path]]) -> Iterator[FileOutcome]:
    """`encode_file` of each (source, target) pair as a Ray task coding with one worker process (the same bytes),
    connected to Ray (`cluster.connection`) if there is anything to code; the outcomes as the tasks end."""
    from dsaecodec import cluster
    from dsaecodec.parallel import available_cores

    if not pairs:
        return
    task_options = dataclasses.replace(options, jobs=1)
    with cluster.connection(address, cpus=cpus or available_cores()):
        yield from cluster.run_tasks(encode_file, [(task_options, source, target) for source, target in pairs],
                                     gpu=options.device == "cuda")


@main.command()
@click.argument("input_path", metavar="IN.dsae", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output video: .mp4/.mkv (x264, with the file's sound), .y4m, or a folder of PNGs (no sound) "
                   "[default: IN with .mp4]")
@click.option("--lossless", is_flag=True, help="Write .mp4/.mkv with x264 crf 0 in 4:4:4 instead of crf 18.")
@click.option("--no-audio", is_flag=True, help="Leave the file's sound out of the .mp4/.mkv (it is not read).")
@click.option("--segments", metavar="START:END",
              help="Decode only segments START to END-1, read directly through the index. Python slice "
                   "semantics: 0-based, END excluded, either may be omitted or negative; 3:5 is segments 3 and 4. "
                   "The sound is cut to the same span.")
@click.option("--verify", is_flag=True,
              help="Write no video: decode each segment (all, or those of --segments), which re-checks its CRC, "
                   "and print `segment k: ok` or `segment k: <error>`, then `audio: ok` or `audio: <error>` if the "
                   "file has sound; exit 2 if any fails.")
@JOBS_OPTION
@DEVICE_OPTION
@FORCE_OPTION
@_one_line_errors
def decode(input_path: Path, output: Path | None, lossless: bool, no_audio: bool, segments: str | None,
           verify: bool, jobs: int | None, device: str, force: bool) -> None:
    """Decompress a .dsae file into a playable video (with its sound, in .mp4 and .mkv)."""
    from fractions import Fraction

    from dsaecodec.fileutil import check_output
    from dsaecodec.parallel import start_workers_early

    if verify and output:
        raise ValueError("--verify writes no output; leave out -o")
    jobs = _jobs(jobs, device)
    if not verify:
        output = output or input_path.with_suffix(".mp4")
        _check_not_input(input_path, output)
        check_output(output, force)
        start_workers_early(jobs)  # the workers' import of torch runs beside this process's
    from tqdm import tqdm

    from dsaecodec.codec import Decoder
    from dsaecodec.videoio import VideoWriter, carries_audio

    with open(_readable(input_path), "rb") as source:
        decoder = Decoder(source, device=_device(device))
        header = decoder.header
        selected = _segment_range(segments, len(decoder))
        if verify:
            _verify(input_path, decoder, selected)
            return
        fps = Fraction(header.fps_num, header.fps_den)
        sound, window = None, (Fraction(0), None)
        if decoder.reader.audio_size and not no_audio:
            if carries_audio(output):
                sound = _read_sound(input_path, decoder.reader)
                window = (selected.start * header.segment_length / fps,  # the sound of the selected segments
                          None if selected.stop == len(decoder) else selected.stop * header.segment_length / fps)
            else:
                click.echo(f"dsaecodec: note: {input_path} has sound, which {output} cannot carry: it was not "
                           f"written (decode to .mp4 or .mkv to keep it)", err=True)
        frame_count = 0
        with VideoWriter(output, header.width, header.height, fps, lossless=lossless, force=force, audio=sound,
                         audio_window=window) as writer:
            length = header.segment_length
            total = sum(min(length, header.frame_count - k * length) for k in selected)
            for frame in tqdm(decoder.frames(selected, jobs), total=total, unit="frame", desc="decode",
                              disable=None, leave=False):
                writer.write(frame)
                frame_count += 1
    click.echo(f"{output}: {frame_count} frames {header.width}x{header.height} at {float(fps):.3f} fps"
               + (" with sound" if sound else ""))


def _checked_sound(reader) -> bytes:
    """A file's sound, its CRC checked and FFmpeg able to read it (BitstreamError or AudioError otherwise)."""
    from dsaecodec.audio import describe

    sound = reader.read_audio()
    describe(sound)
    return sound


def _read_sound(input_path: Path, reader) -> bytes:
    """`_checked_sound`, its errors naming the file and --no-audio."""
    from bitstream.format import BitstreamError
    from dsaecodec.audio import AudioError

    try:
        return _checked_sound(reader)
    except (BitstreamError, AudioError) as error:
        raise type(error)(f"{input_path}: {error}; --no-audio decodes the video alone") from None


def _bitrate(text: str) -> float:
    """Bits per second of `--bitrate` text: a positive number, optionally with k (10^3) or M (10^6)."""
    scale = {"k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6}.get(text[-1:], 1)
    try:
        rate = float(text[:-1] if scale != 1 else text) * scale
    except ValueError:
        rate = float("nan")
    if not rate > 0 or rate == float("inf"):
        raise ValueError(f"--bitrate takes bits per second such as 150k, 1.2M or 80000, not {text!r}")
    return rate


def _segment_range(text: str | None, count: int) -> range:
    """The segments `--segments START:END` selects out of `count` (Python slice semantics); all if `text` is None."""
    if text is None:
        return range(count)
    try:
        start, end = (int(part) if part.strip() else None for part in text.split(":"))
    except ValueError:
        raise ValueError(f"--segments takes START:END, e.g. 3:5, not {text!r}") from None
    selected = range(count)[start:end]
    if not selected:
        raise ValueError(f"--segments {text} selects none of the file's {count} segments")
    return selected


def _verify(input_path: Path, decoder: Decoder, selected: range) -> None:
    """Decode the selected segments, print one status line each; BitstreamError if any fails."""
    from bitstream.format import BitstreamError

    failed = 0
    for k in selected:
        try:
            for _ in decoder.frames([k]):  # every frame decoded, none kept
                pass
            click.echo(f"segment {k}: ok")
        except BitstreamError as error:
            failed += 1
            click.echo(f"segment {k}: {error}")
    sound_failed = False
    if decoder.reader.audio_size:
        from dsaecodec.audio import AudioError

        try:
            _checked_sound(decoder.reader)
            click.echo("audio: ok")
        except (BitstreamError, AudioError) as error:
            sound_failed = True
            click.echo(f"audio: {error}")
    if failed:
        raise BitstreamError(f"{input_path}: {failed} of {len(selected)} segments failed verification")
    if sound_failed:
        raise BitstreamError(f"{input_path}: its sound failed verification; --no-audio decodes the video alone")
    click.echo(f"{input_path}: {len(selected)} segments ok" + (" and its sound" if decoder.reader.audio_size else ""))


def _check_not_input(input_path: Path, output: Path) -> None:
    """Refuse an output path that is the input file itself (--force would replace it)."""
    if output.exists() and input_path.exists() and output.samefile(input_path):
        raise ValueError(f"the output {output} is the input file")


def _readable(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a .dsae file")
    return path


@main.command()
@click.argument("input_path", metavar="IN.dsae", type=click.Path(path_type=Path))
@_one_line_errors
def info(input_path: Path) -> None:
    """Show a .dsae file's geometry, model, quality, sound and bits per frame (split into f and z)."""
    from bitstream.format import QUALITY_STEPS, BitstreamReader

    with open(_readable(input_path), "rb") as source:
        reader = BitstreamReader(source)
        header = reader.header
        f_bytes = z_bytes = 0
        qualities = set()
        for k in range(len(reader)):
            f_size, z_size = reader.segment_sizes(k)
            f_bytes, z_bytes = f_bytes + f_size, z_bytes + z_size
            qualities.add(reader.segment_quality(k) / QUALITY_STEPS)
        size = source.seek(0, 2)
        sound, sound_row = reader.audio_size, "none"
        if sound:
            from bitstream.format import BitstreamError
            from dsaecodec.audio import AudioError, describe

            try:
                sound_row = f"{describe(reader.read_audio())}, {sound} bytes"
            except (BitstreamError, AudioError) as error:
                sound_row = f"unreadable, {sound} bytes ({error}); decode --no-audio decodes the video alone"
    frames, pixels = header.frame_count, header.frame_count * header.width * header.height
    rows = [
        ("file", f"{input_path} ({size} bytes)"),
        ("model", f"{header.model_name} (weights fingerprint {header.weights_fingerprint.hex()})"),
        ("geometry", f"{header.width}x{header.height}, {frames} frames at {header.fps_num}/{header.fps_den} fps"),
        ("segments", f"{len(reader)} of {header.segment_length} frames"),
        ("quality", f"{min(qualities):g}" if len(qualities) == 1 else
                    f"{min(qualities):g} to {max(qualities):g} (set per segment)"),
        ("audio", sound_row),
        ("bits/frame", f"{8 * size / frames:.1f} total = f {8 * f_bytes / frames:.1f} + z {8 * z_bytes / frames:.1f}"
                       f" + container {8 * (size - f_bytes - z_bytes - sound) / frames:.1f}"
                       + (f" + audio {8 * sound / frames:.1f}" if sound else "")),
        ("bits/pixel", f"{8 * size / pixels:.5f}"),
    ]
    for key, value in rows:
        click.echo(f"{key:<11} {value}")


@main.command()
@click.argument("content_path", metavar="CONTENT.dsae", type=click.Path(path_type=Path))
@click.argument("motion_path", metavar="MOTION.dsae", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output .dsae file.")
@FORCE_OPTION
@_one_line_errors
def swap(content_path: Path, motion_path: Path, output: Path, force: bool) -> None:
    """Swap content and motion in the compressed domain, without re-encoding.

    Segment k of the output takes the static latent f (what is in the scene) from CONTENT.dsae and the
    dynamic latents z_1:T (how it moves) from MOTION.dsae, by copying their entropy-coded payloads.
    Both files need the same model, frame size and segment length, and their segments k the same quality.
    """
    from bitstream.edit import swap as swap_payloads
    from bitstream.format import BitstreamReader
    from dsaecodec.fileutil import atomic_output

    for path in (content_path, motion_path):
        _check_not_input(path, output)
    with open(_readable(content_path), "rb") as content, open(_readable(motion_path), "rb") as motion:
        with atomic_output(output, force) as tmp, open(tmp, "wb") as out:
            header = swap_payloads(BitstreamReader(content), BitstreamReader(motion), out)
    click.echo(f"{output}: content of {content_path.name}, motion of {motion_path.name}, {header.frame_count} frames")


@main.command()
@click.option("-m", "--model", "model_name", default="dsae-sprites", show_default=True,
              help="Shipped DSAE to sample from (ignored when a file is given: its model is used).")
@click.option("--content", "content_path", type=click.Path(path_type=Path),
              help="Take f (content) from this .dsae file; otherwise f is drawn from the learned prior.")
@click.option("--motion", "motion_path", type=click.Path(path_type=Path),
              help="Take z_1:T (motion) from this .dsae file; otherwise z is drawn from the ConvLSTM prior.")
@click.option("-n", "--frames", type=click.IntRange(1, 10_000), default=8, show_default=True,
              help="Frames to generate (at most the motion file's length).")
@click.option("-q", "--quality", type=float, default=2, show_default=True, help="Quality when no file is given.")
@click.option("--size", default="64x64", show_default=True, help="WIDTHxHEIGHT when no file is given.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampling.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output video: .mp4/.mkv, .y4m, or a folder of PNGs.")
@FORCE_OPTION
@_one_line_errors
def generate(model_name: str, content_path: Path | None, motion_path: Path | None, frames: int, quality: float,
             size: str, seed: int, output: Path, force: bool) -> None:
    """Generate video from a DSAE's priors: random motion for fixed content, or random content for fixed motion."""
    from fractions import Fraction

    from dsaecodec.codec import Decoder, generate as generate_frames
    from dsaecodec.fileutil import check_output
    from dsaecodec.videoio import VideoWriter

    check_output(output, force)
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 64x64, got {size!r}") from None
    decoders = {name: Decoder(_readable(path).read_bytes()) if path else None
                for name, path in (("content", content_path), ("motion", motion_path))}
    header = next((d.header for d in decoders.values() if d), None)
    fps = Fraction(header.fps_num, header.fps_den) if header else Fraction(15)
    segments = generate_frames(frames, model_name=model_name, quality=quality, size=(width, height), seed=seed,
                               **decoders)
    first = next(segments)
    written = 0
    with VideoWriter(output, first.shape[2], first.shape[1], fps, force=force) as writer:
        for clip in itertools.chain([first], segments):
            for frame in clip:
                writer.write(frame)
                written += 1
    click.echo(f"{output}: {written} generated frames {first.shape[2]}x{first.shape[1]}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, add_help_option=False)
@click.pass_context
def train(ctx: click.Context) -> None:
    """Train a model (every option: `dsaecodec train --help`)."""
    from dsaecodec.train import main as train_main

    train_main(ctx.args)


@main.command()
@click.argument("name", required=False, metavar="[NAME | WEIGHTS.pt]")
@_one_line_errors
def models(name: str | None) -> None:
    """List the shipped models: name, domain, quality levels, parameters, training data, sha256. With NAME (a
    shipped model or a weights file), that model alone and the training run its weights record: the recipe and the
    learning curve."""
    from dsaecodec import zoo

    if name is None:
        cards = list(zoo.MODELS.values())
    else:  # a weights file is shown as it is, whatever shipped model shares its name
        cards = [zoo.weights_card(Path(name)) if name.endswith(".pt") else zoo.registered_card(name)]
    for card in cards:
        try:
            weights = zoo.checked_weights(card)
        except zoo.UnknownModelError as error:
            click.echo(f"{card.name}: unavailable ({error})")
            continue
        if not card.qualities:  # a weights file's card records neither: read them from the model it builds
            model = zoo.load_weights(weights)
            card = dataclasses.replace(card, qualities=model.qualities,
                                       parameters=sum(p.numel() for p in model.parameters()))
        click.echo(f"{card.name}\n  family    {card.family}\n  domain    {card.domain}\n"
                   f"  qualities 0..{card.qualities - 1}\n  params    {card.parameters:,}\n"
                   f"  training  {card.training}\n  sha256    {card.sha256}")
        if name is not None:
            _show_training_record(zoo.training_record(weights))


def _show_training_record(record: dict | None) -> None:
    """The recipe of a run and the last validation pass of its learning curve, as `dsaecodec models NAME` shows."""
    from dsaecodec import zoo

    if record is None:
        click.echo("  recipe    not recorded in the weights file (written before runs were recorded)")
        return
    click.echo(f"  data      {record['data']}\n  steps     {record['steps']}, "
               + f"{zoo.training_time(record)} of training"
               + "\n  recipe    " + "\n            ".join(f"{key} = {value!r}" for key, value in record["recipe"].items()))
    history = record["history"]
    if history:
        last = history[-1]["step"]
        click.echo(f"  learning curve: {len({row['step'] for row in history})} validation passes; at step {last}:")
        for row in (row for row in history if row["step"] == last):
            click.echo(f"    q{row['quality']:<3} {row['coded_bpp']:.4f} bpp (estimate {row['estimated_bpp']:.4f}), "
                       f"PSNR {row['psnr']:.2f} dB")

if __name__ == "__main__":
    main()
