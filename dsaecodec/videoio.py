"""Video I/O: any video FFmpeg (through PyAV) can read in, as uint8 RGB frames; mp4 / mkv / y4m / PNG folders out.

Frames are numpy arrays of shape (H, W, 3), dtype uint8, RGB, C-contiguous. Odd sizes are legal.

Reading (`VideoReader`, `read_video`):
- Any local file FFmpeg demuxes and decodes is a video, including a single image (a 1-frame clip at 25 fps).
  A folder is not (not even a folder of PNGs), nor is audio with cover art. The first video stream is read.
- YUV is converted to RGB with the matrix and range the stream is tagged with (untagged: BT.601, limited range,
  as FFmpeg does), with accurate bicubic chroma upsampling. The conversion is bit-exact across machines.
- Frames come out one per decoded picture, in presentation order; variable frame rates are not resampled.
- A file that fails to decode part-way (e.g. a cut mp4) yields the frames before the damage, then raises
  `VideoError`: a partial clip is never passed off as a whole one. Containers without an index (mkv, y4m, raw
  h264) cannot tell a cut file from a short one; those end quietly after their last complete frame.
- A stream whose frame size changes part-way raises `VideoError` when the first frame of the new size comes up.
- `start_time` is the first frame's time in seconds (0 for most files): where its sound (`dsaecodec.audio`)
  starts to go with the pictures.

Writing (`VideoWriter`), the format chosen by the target's extension:
- ".mp4" / ".mkv": H.264 (libx264, preset medium, crf 18, yuv420p). yuv420p needs an even width and height,
  so odd sizes get yuv444p (the High 4:4:4 profile, which some hardware players cannot play).
  `lossless=True`: crf 0 in yuv444p. The codec is then lossless but the RGB -> 8-bit YUV conversion is not:
  expect at most 2 levels of error per channel (about 52 dB PSNR). mp4 files carry their index first
  (faststart): they play while downloading, and a cut one still yields its first frames.
- ".y4m": raw yuv444p (same RGB -> YUV conversion, so the same 2-level bound).
- A path without extension, ending in "/", or naming an existing folder: frame_000001.png, ... (exact RGB;
  the frame rate is not stored). `force` replaces such a folder, never one holding any other file.
- YUV outputs use the BT.601 matrix, limited range, and are tagged so.
- Sound (`audio=`, a blob of `dsaecodec.audio`) goes into .mp4 / .mkv only (`carries_audio`), interleaved with
  the pictures as they are written; its `audio_window` (start, end) in seconds is cut out and starts at frame 0.
- Outputs are atomic (`dsaecodec.fileutil.atomic_output`): written next to the target and renamed onto it
  when the writer closes cleanly; on an exception in the `with` block, or `abort()`, nothing is left behind.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import re
import sys
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import av.logging
import numpy as np
from av.stream import Disposition
from av.video.reformatter import ColorRange, Colorspace, Interpolation

from dsaecodec.fileutil import OutputExistsError, atomic_output

# FFmpeg would otherwise print its own diagnostics on stderr; our errors say what went wrong in one line.
av.logging.set_level(None)

# swscale flags for every RGB <-> YUV conversion: bicubic, full-resolution chroma, accurate and bit-exact
# rounding. FFmpeg's fast default path replicates chroma samples and loses ~18 dB on a yuv420p round trip.
_SWS_FLAGS = (
    Interpolation.BICUBIC
    | Interpolation.ACCURATE_RND
    | Interpolation.BITEXACT
    | Interpolation.FULL_CHR_H_INT
    | Interpolation.FULL_CHR_H_INP
)
_AVCOL_SPC_SMPTE170M = 6  # FFmpeg's tag for the BT.601 matrix that Colorspace.ITU601 applies
_DEFAULT_FPS = Fraction(25)
_MUXERS = {".mp4": "mp4", ".mkv": "matroska", ".y4m": "yuv4mpegpipe"}
_PNG_NAME = re.compile(r"frame_\d{6,}\.png")


def rgb_to_picture(frame: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    """uint8 (H, W, 3) RGB -> an `av.VideoFrame` in `pix_fmt` (BT.601, limited range for YUV formats)."""
    picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    if pix_fmt == "rgb24":
        return picture
    return picture.reformat(format=pix_fmt, dst_colorspace=Colorspace.ITU601, dst_color_range=ColorRange.MPEG,
                            interpolation=_SWS_FLAGS)


def picture_to_rgb(picture: av.VideoFrame) -> np.ndarray:
    """A decoded `av.VideoFrame` -> uint8 (H, W, 3) RGB, C-contiguous (colour tags of the frame honoured)."""
    return np.ascontiguousarray(picture.to_ndarray(format="rgb24", interpolation=_SWS_FLAGS))


def _url(path: str | Path) -> str:
    """FFmpeg URL of a local path: "file:" stops "a:b.mp4" being read as protocol "a"."""
    return f"file:{path}"


class VideoError(Exception):
    """The input is not a readable video; str() is one sentence naming the file."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path} is not a readable video: {problem}")


def _reason(error: av.FFmpegError) -> str:
    """FFmpeg's description of an error, without errno and call-site noise."""
    return error.strerror or type(error).__name__


class VideoReader:
    """Streaming reader: `for frame in reader` yields (H, W, 3) uint8 RGB frames, decoded lazily.

    Opening decodes the first frame, so a file without a decodable frame fails here, with `VideoError`.
    A reader can be iterated once.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise VideoError(path, "no such file")
        if self.path.is_dir():
            raise VideoError(path, "it is a folder")
        if self.path.stat().st_size == 0:
            raise VideoError(path, "the file is empty")
        try:
            self._container = av.open(_url(self.path))
        except av.FFmpegError as e:
            raise VideoError(path, f"FFmpeg cannot open it ({_reason(e)})") from None
        try:
            streams = [s for s in self._container.streams.video if not s.disposition & Disposition.attached_pic]
            if not streams:
                raise VideoError(path, "it has no video stream (cover art does not count)")
            stream = streams[0]
            self._decoded = self._container.decode(stream)
            self._pending: av.VideoFrame | None = self._next_frame(0)
            if self._pending is None:
                raise VideoError(path, "it holds no video frames")
        except BaseException:
            self._container.close()
            raise
        self.width: int = self._pending.width
        self.height: int = self._pending.height
        self.fps: Fraction = Fraction(stream.average_rate or stream.guessed_rate or _DEFAULT_FPS)
        first = self._pending.pts
        self.start_time: Fraction = Fraction(first * stream.time_base) if first is not None and stream.time_base \
            else Fraction(0)
        self.frame_count: int | None = self._estimate_frame_count(stream)

    def _estimate_frame_count(self, stream: av.video.stream.VideoStream) -> int | None:
        """The container's frame count, else its duration times fps; None if it states neither."""
        if stream.frames:
            return stream.frames
        if stream.duration is not None and stream.time_base:
            seconds = stream.duration * stream.time_base
        elif self._container.duration is not None:
            seconds = Fraction(self._container.duration, av.time_base)
        else:
            return None
        return round(seconds * self.fps)

    def _next_frame(self, decoded: int) -> av.VideoFrame | None:
        """The next decoded picture, None at the end; `decoded` frames came before it (for the message)."""
        try:
            return next(self._decoded, None)
        except av.FFmpegError as e:
            problem = f"damaged or truncated after frame {decoded}" if decoded else "no frame decodes"
            raise VideoError(self.path, f"{problem} ({_reason(e)})") from None

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._pending is None:
            raise RuntimeError("a VideoReader can be iterated only once")
        frame, self._pending = self._pending, None
        for index in itertools.count(1):
            if (frame.width, frame.height) != (self.width, self.height):
                raise VideoError(
                    self.path,
                    f"the frame size changes from {self.width}x{self.height} "
                    f"to {frame.width}x{frame.height} at frame {index}",
                )
            yield picture_to_rgb(frame)
            frame = self._next_frame(index)
            if frame is None:
                return

    def close(self) -> None:
        """Release the file (idempotent)."""
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_video(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, Fraction]:
    """All frames (or the first `max_frames`) as one (N, H, W, 3) uint8 array, and the fps."""
    with VideoReader(path) as reader:
        return np.stack(list(itertools.islice(reader, max_frames))), reader.fps


def _muxer(path: str | Path) -> str:
    """FFmpeg muxer for an output path; "image2" means a folder of PNGs."""
    target = Path(path)
    if str(path).endswith(("/", os.sep)) or target.is_dir() or not target.suffix:
        return "image2"
    if target.suffix.lower() not in _MUXERS:
        raise ValueError(f"unsupported output extension {target.suffix!r}; use .mp4, .mkv, .y4m or a folder")
    return _MUXERS[target.suffix.lower()]


def carries_audio(path: str | Path) -> bool:
    """Whether `VideoWriter` writes sound to `path` (.mp4 and .mkv do; .y4m and PNG folders do not)."""
    return _muxer(path) in ("mp4", "matroska")


def _encoder(muxer: str, width: int, height: int, lossless: bool) -> tuple[str, str, dict[str, str]]:
    """(codec, pixel format, codec options) for a muxer; see the module docstring."""
    if muxer == "image2":
        return "png", "rgb24", {}
    if muxer == "yuv4mpegpipe":
        return "rawvideo", "yuv444p", {}
    odd = width % 2 or height % 2
    pix_fmt = "yuv444p" if lossless or odd else "yuv420p"
    return "libx264", pix_fmt, {"crf": "0" if lossless else "18", "preset": "medium"}


def _check_replaceable_folder(folder: Path) -> None:
    """Refuse to replace a folder that holds anything but our PNG frames (say, `--force` on the home folder)."""
    if folder.is_dir() and any(not _PNG_NAME.fullmatch(p.name) for p in folder.iterdir()):
        raise OutputExistsError(f"{folder} is a folder with other files in it; refusing to replace it")


class _Aborted(Exception):
    """Thrown into `atomic_output` to make it discard the temporary output."""


class VideoWriter:
    """Write (H, W, 3) uint8 RGB frames to mp4, mkv, y4m or a PNG folder, atomically (see the module docstring).

    Raises `OutputExistsError` if the target exists and not `force`, `ValueError` for an unsupported extension,
    both before anything is written. `fps` is kept as an exact rational (a float is rounded to the nearest one
    with denominator <= 100000). `lossless` matters for mp4 / mkv only: y4m and PNG are always as close as they get.
    `audio` (mp4 / mkv only, else ValueError) is the sound to add, `audio_window` its (start, end) seconds (end
    None: to the end of the sound); `dsaecodec.audio.AudioError` if it cannot be read or written.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: Fraction,
        *,
        lossless: bool = False,
        force: bool = False,
        audio: bytes | None = None,
        audio_window: tuple[Fraction, Fraction | None] = (Fraction(0), None),
    ):
        muxer = _muxer(path)
        if audio is not None and muxer not in ("mp4", "matroska"):
            raise ValueError(f"{path}: only .mp4 and .mkv outputs carry sound")
        fps = Fraction(fps).limit_denominator(100_000)
        if width <= 0 or height <= 0 or fps <= 0:
            raise ValueError(f"invalid video geometry {width}x{height} at {fps} fps")
        target = Path(path)
        if force and muxer == "image2":
            _check_replaceable_folder(target)
        self.width, self.height = width, height
        self._finished = False
        self._fps = fps
        self._audio = None
        self._output = atomic_output(target, force, directory=muxer == "image2")
        tmp = self._output.__enter__()
        try:
            url = f"{str(tmp).replace('%', '%%')}/frame_%06d.png" if muxer == "image2" else tmp
            options = {"movflags": "+faststart"} if muxer == "mp4" else {}
            self._container = av.open(_url(url), "w", format=muxer, options=options)
            codec, pix_fmt, codec_options = _encoder(muxer, width, height, lossless)
            self._stream = self._container.add_stream(codec, rate=fps, options=codec_options)
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, pix_fmt
            if pix_fmt != "rgb24":
                self._stream.codec_context.colorspace = _AVCOL_SPC_SMPTE170M
                self._stream.codec_context.color_range = ColorRange.MPEG
            if audio is not None:
                from dsaecodec.audio import AudioTrack

                self._audio = AudioTrack(audio, self._container, muxer, *audio_window)
        except BaseException:
            if hasattr(self, "_container"):
                with contextlib.suppress(av.FFmpegError, OSError):
                    self._container.close()
            self._output.__exit__(*sys.exc_info())
            raise
        self._count = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame; ValueError on another shape or dtype."""
        if self._finished:
            raise ValueError("write to a closed VideoWriter")
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"expected a ({self.height}, {self.width}, 3) uint8 frame, got {frame.shape} {frame.dtype}"
            )
        picture = rgb_to_picture(frame, self._stream.pix_fmt)
        picture.pts = self._count
        self._container.mux(self._stream.encode(picture))
        self._count += 1
        if self._audio is not None:
            self._audio.write_until(self._count / self._fps)

    def close(self) -> None:
        """Finish the file and move it onto the target (idempotent). If finishing fails, nothing is left.

        Raises ValueError, leaving nothing, if no frame was written: an empty video is not a readable one.
        """
        if self._finished:
            return
        if self._count == 0:
            self.abort()
            raise ValueError("no frames were written, so no video was saved")
        self._finished = True
        try:
            try:
                self._container.mux(self._stream.encode(None))
                if self._audio is not None:
                    self._audio.finish()
            finally:
                self._container.close()
        except BaseException:
            self._output.__exit__(*sys.exc_info())
            raise
        self._output.__exit__(None, None, None)

    def abort(self) -> None:
        """Stop and delete everything written; the target stays as it was (idempotent, no-op after close)."""
        if self._finished:
            return
        self._finished = True
        try:
            if self._audio is not None:
                self._audio.close()
            with contextlib.suppress(av.FFmpegError, OSError):  # a failure to finish what is discarded anyway
                self._container.close()
        finally:
            self._output.__exit__(_Aborted, _Aborted(), None)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
