"""Sound: the input's first audio stream carried through a .dsae file, with PyAV.

The container (`bitstream.format`) stores the sound as one opaque record; this module makes and reads it.
The record is a small self-contained MP4 audio-only file (what a .m4a file is), which FFmpeg and players open:

- `extract(path, start)`: the first audio stream of the video at `path`, from `start` seconds (the time of its
  first video frame) on, with timestamps shifted so that `start` is 0. Its packets are copied as they are when
  the codec is one MP4 carries (`BLOB_COPY`: AAC, MP3, MP2, Opus, FLAC, ALAC, AC-3, E-AC-3, and PCM); any other
  (Vorbis, WMA, AMR, ...) is re-encoded to Opus (128 kbit/s stereo, 64 kbit/s mono, 48 kHz; more channels are
  mixed down to stereo). MP4 is chosen over Matroska because it keeps the stream's own time base and its edit
  lists: AAC's encoder delay (a packet of priming before t = 0) survives, where Matroska's millisecond timestamps
  would start the sound 21 ms late, make it 21 ms longer and round every packet's time.
- `describe(blob)`: codec, sample rate, channels and duration, for `dsaecodec info`.
- `AudioTrack`: the sound of a blob between two times, added to an output container being written (for
  `VideoWriter`): packets copied when the output container takes the codec (mp4: AAC, MP3, Opus, FLAC, ALAC, AC-3,
  E-AC-3; mkv: whatever Matroska takes), otherwise re-encoded (AAC for mp4, Opus for mkv). `write_until(t)` adds
  the packets before t seconds, so that sound and pictures are interleaved as they are written.

Packets are kept whole: a packet is kept if it ends at or after the start of the window (so AAC's priming packet,
which ends at 0, is kept as the decoder's pre-roll) and starts before its end. Every FFmpeg failure is an
`AudioError`, one sentence.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import av.logging
from av.audio.fifo import AudioFifo
from av.audio.resampler import AudioResampler

from bitstream.format import MAX_AUDIO_SIZE

av.logging.set_level(None)

BLOB_FORMAT = "mp4"
"""FFmpeg muxer of the blob."""
BLOB_COPY = frozenset({"aac", "mp3", "mp2", "opus", "flac", "alac", "ac3", "eac3"})
"""Codecs whose packets the blob carries as they are, besides the PCM formats MP4 takes."""
REENCODE_BITRATE = 128_000
MP4_COPY = frozenset({"aac", "mp3", "opus", "flac", "alac", "ac3", "eac3"})
"""Codecs copied into an mp4 output (players know them); others are re-encoded to AAC."""


class AudioError(Exception):
    """Sound that cannot be read or written; str() is one sentence."""


@dataclass(frozen=True)
class AudioInfo:
    """What `describe` tells of a blob."""

    codec: str  # FFmpeg's name, e.g. "aac"
    sample_rate: int  # Hz
    channels: int
    duration: float  # seconds

    def __str__(self) -> str:
        return f"{self.codec}, {self.sample_rate} Hz, {self.channels} channel{'s' * (self.channels != 1)}, " \
               f"{self.duration:.3f} s"


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _packets(container: av.container.InputContainer, stream: av.audio.AudioStream, start: Fraction,
             end: Fraction | None) -> Iterator[av.Packet]:
    """The stream's packets (empty ones skipped) that end at or after `start` and begin before `end`."""
    for packet in container.demux(stream):
        if packet.size == 0 or packet.pts is None:
            continue
        begins = packet.pts * stream.time_base
        if end is not None and begins >= end:
            continue
        if begins + (packet.duration or 0) * stream.time_base >= start:
            yield packet


def _shift(packet: av.Packet, offset: int) -> None:
    """Move a packet `offset` ticks of its time base earlier."""
    packet.pts -= offset
    if packet.dts is not None:
        packet.dts -= offset


def _encoder(container: av.container.OutputContainer, codec: str, source: av.audio.AudioStream) -> av.audio.AudioStream:
    """A new `codec` stream (Opus or AAC) on `container` for the sound of `source`: mono or stereo (more
    channels are mixed down to stereo), 48 kHz for Opus, the source's rate for AAC where AAC has it."""
    context = source.codec_context
    layout = "mono" if context.channels == 1 else "stereo"
    aac_rates = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000}
    rate = context.sample_rate if codec == "aac" and context.sample_rate in aac_rates else 48000
    stream = container.add_stream({"opus": "libopus", "aac": "aac"}[codec], rate=rate)
    stream.layout = layout
    stream.bit_rate = REENCODE_BITRATE if layout == "stereo" else REENCODE_BITRATE // 2
    stream.time_base = Fraction(1, rate)
    return stream


class _Transcoder:
    """Decoded frames of one stream re-encoded into another, timestamps shifted; packets out."""

    def __init__(self, source: av.audio.AudioStream, target: av.audio.AudioStream, start: Fraction):
        self.source, self.target, self.start = source, target, start
        self.resampler = AudioResampler(format=target.format.name, layout=target.layout.name, rate=target.rate)
        self.fifo = AudioFifo()
        self.next_pts: int | None = None
        self.frame_size = target.codec_context.frame_size or 960

    def packets(self, packet: av.Packet | None) -> Iterator[av.Packet]:
        """The packets that encoding `packet`'s sound (None: the end) completes."""
        frames = self.source.codec_context.decode(packet)
        for frame in frames:
            if self.next_pts is None and frame.pts is not None:  # the first frame fixes the timeline
                self.next_pts = round((frame.pts * self.source.time_base - self.start) * self.target.rate)
            frame.pts = None
            for resampled in self.resampler.resample(frame):
                resampled.pts = None
                self.fifo.write(resampled)
        if packet is None:
            for resampled in self.resampler.resample(None):
                resampled.pts = None
                self.fifo.write(resampled)
        while self.fifo.samples >= self.frame_size or (packet is None and self.fifo.samples):
            frame = self.fifo.read(min(self.frame_size, self.fifo.samples))
            frame.pts, self.next_pts = self.next_pts or 0, (self.next_pts or 0) + frame.samples
            frame.time_base = Fraction(1, self.target.rate)
            yield from self.target.encode(frame)
        if packet is None:
            yield from self.target.encode(None)


def extract(path: str | Path, start: Fraction | float = 0) -> bytes | None:
    """The blob of the first audio stream of `path` from `start` seconds on (see the module docstring), or None if
    the file has no audio stream or no sound after `start`. Raises AudioError if the sound cannot be read."""
    start = Fraction(start)
    try:
        with av.open(f"file:{path}") as source:
            if not source.streams.audio:
                return None
            stream = source.streams.audio[0]
            out = io.BytesIO()
            written = 0
            with av.open(out, "w", format=BLOB_FORMAT) as blob:
                name = stream.codec_context.name
                if name in BLOB_COPY or name.startswith("pcm_") and name in blob.supported_codecs:
                    target = blob.add_stream_from_template(stream)
                    offset = round(start / stream.time_base)
                    for packet in _packets(source, stream, start, None):
                        _shift(packet, offset)
                        packet.stream = target
                        blob.mux(packet)
                        written += 1
                else:
                    target = _encoder(blob, "opus", stream)
                    transcoder = _Transcoder(stream, target, start)
                    for packet in _packets(source, stream, start, None):
                        for coded in transcoder.packets(packet):
                            blob.mux(coded)
                            written += 1
                    if transcoder.next_pts is not None:
                        for coded in transcoder.packets(None):
                            blob.mux(coded)
                            written += 1
    except av.FFmpegError as error:
        raise AudioError(f"{path}: its sound cannot be read ({_reason(error)}); --no-audio codes the video "
                         f"alone") from None
    if not written:
        return None
    data = out.getvalue()
    if len(data) > MAX_AUDIO_SIZE:
        raise AudioError(f"{path}: its sound takes {len(data)} bytes, over the limit of {MAX_AUDIO_SIZE}; "
                         f"--no-audio codes the video alone")
    return data


def _open_blob(blob: bytes) -> tuple[av.container.InputContainer, av.audio.AudioStream]:
    try:
        container = av.open(io.BytesIO(blob), format=BLOB_FORMAT)
    except av.FFmpegError as error:
        raise AudioError(f"the sound in the file cannot be read ({_reason(error)})") from None
    if not container.streams.audio:
        container.close()
        raise AudioError("the sound in the file has no audio stream")
    return container, container.streams.audio[0]


def describe(blob: bytes) -> AudioInfo:
    """Codec, sample rate, channels and duration of a blob; AudioError if FFmpeg cannot read it."""
    container, stream = _open_blob(blob)
    with container:
        context = stream.codec_context
        if stream.duration is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = container.duration / av.time_base if container.duration else 0.0
        return AudioInfo(context.name, context.sample_rate, context.channels, duration)


class AudioTrack:
    """The sound of a blob between `start` and `end` seconds (None: to its end), added to the output `container`
    (muxer `muxer`: "mp4" or "matroska") with `start` as t = 0. Call `write_until` as pictures are written,
    then `finish`. AudioError if FFmpeg fails."""

    def __init__(self, blob: bytes, container: av.container.OutputContainer, muxer: str,
                 start: Fraction = Fraction(0), end: Fraction | None = None):
        self._input, self._source = _open_blob(blob)
        self._container, self._start = container, Fraction(start)
        self._finished = False
        try:
            name = self._source.codec_context.name
            copy = name in MP4_COPY if muxer == "mp4" else name in container.supported_codecs
            if copy:
                self._target = container.add_stream_from_template(self._source)
                self._transcoder = None
            else:
                self._target = _encoder(container, "aac" if muxer == "mp4" else "opus", self._source)
                self._transcoder = _Transcoder(self._source, self._target, self._start)
            self._packets = _packets(self._input, self._source, self._start, None if end is None else Fraction(end))
            self._pending: av.Packet | None = None
        except av.FFmpegError as error:
            self._input.close()
            raise AudioError(f"the sound cannot be written ({_reason(error)})") from None
        self._offset = round(self._start / self._source.time_base)

    def _time(self, packet: av.Packet) -> Fraction:
        return packet.pts * self._source.time_base - self._start

    def write_until(self, seconds: Fraction | None) -> None:
        """Add the sound that starts before `seconds` (None: all that is left)."""
        try:
            while True:
                if self._pending is None:
                    self._pending = next(self._packets, None)
                    if self._pending is None:
                        return
                if seconds is not None and self._time(self._pending) >= seconds:
                    return
                packet, self._pending = self._pending, None
                if self._transcoder is None:
                    _shift(packet, self._offset)
                    packet.stream = self._target
                    self._container.mux(packet)
                else:
                    self._container.mux(list(self._transcoder.packets(packet)))
        except av.FFmpegError as error:
            raise AudioError(f"the sound cannot be written ({_reason(error)})") from None

    def finish(self) -> None:
        """Add the rest of the sound (and flush a re-encoding); close the blob (idempotent)."""
        if self._finished:
            return
        self._finished = True
        try:
            self.write_until(None)
            if self._transcoder is not None and self._transcoder.next_pts is not None:
                self._container.mux(list(self._transcoder.packets(None)))
        except av.FFmpegError as error:
            raise AudioError(f"the sound cannot be written ({_reason(error)})") from None
        finally:
            self._input.close()

    def close(self) -> None:
        """Release the blob without writing the rest (idempotent)."""
        self._finished = True
        self._input.close()
