"""Video <-> .dsae, one segment of frames at a time, each frame read and written one at a time.

Frames are uint8 RGB arrays (H, W, 3) of any size (a model with vector latents takes only its own size):
they are padded to a multiple of 16 by edge replication for the model and cropped back after decoding.
The last segment may be shorter.

    data = encode(frames, quality=2)               # bytes of a .dsae file
    data = encode(frames, quality=2.5)             # any quality between the trained levels, in steps of 1/16
    data = encode(frames, target=Target(bits_per_frame=3000))   # each segment's quality chosen to meet it
    frames = decode(data)                          # (N, H, W, 3) uint8

The encoder runs the decoder's exact code path, so `EncodedSegment.reconstruction` is, bit for bit,
what `decode` returns for that segment.

The networks run one frame at a time (`models.layers.framewise`), so a frame may hold at most
`MAX_FRAME_PIXELS` pixels. With one job, the encoder passes a segment's frames to the model as they are read
and the decoder gives them out as they are synthesised, so a segment is held as latents only; worker processes
(`jobs` > 1), rate control and reconstructions hold whole segments of pixels. A segment may hold at most
`MAX_SEGMENT_PIXELS` (frames x height x width); encoding refuses larger ones and decoding refuses files that
declare them, before anything is allocated.
"""
from __future__ import annotations

import functools
import io
import itertools
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from bitstream.format import (
    FINGERPRINT_SIZE,
    QUALITY_STEPS,
    BitstreamError,
    BitstreamReader,
    BitstreamWriter,
    Header,
    Segment,
)
from dsaecodec import zoo
from dsaecodec.metrics import psnr
from dsaecodec.models.base import Streams
from dsaecodec.models.layers import STRIDE
from dsaecodec.parallel import ordered_map
from dsaecodec.priors import codec_threads

DEFAULT_SEGMENT_LENGTH = 8
DEFAULT_QUALITY = 2
MAX_FRAME_PIXELS = 2**23
"""Most pixels in one frame (e.g. 3840x2160). Measured on CPU, the networks take ~220 bytes of tensors per pixel of
the frame they work on with the shipped model size (64 channels): at most ~1.8 GB."""
MAX_SEGMENT_PIXELS = 2**28
"""Most pixels in one segment: e.g. 128 frames of 1920x1080, 256 of 1280x720, 873 of 640x480. With one job and
no reconstructions (`dsaecodec encode`), an encoder holds a segment as the DSAE's features for f and the coded
symbols, ~1 byte per pixel measured (`benchmarks/speed.py --parts memory`: 770 -> 785 MiB peak for 16- -> 64-frame
segments of 640x480), and a decoder as one frame at a time; workers (`jobs` > 1), rate control and
reconstructions hold segments of uint8 pixels, 3 bytes per pixel each way."""


@functools.lru_cache(maxsize=16)
def loaded_model(name: str, device: str = "cpu") -> tuple[nn.Module, zoo.ModelCard]:
    """(model in eval mode on `device`, card) of a registered model, loaded once per process and name."""
    model, card = zoo.load_model(name)
    return model.to(device), card


def to_model_input(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) or one frame (H, W, 3) -> uint8 pixels (T, 3, H', W') or (3, H', W'), edge-padded to
    multiples of 16 (the models read each frame as pixel / 255 when they reach it, so frames are never held in
    float)."""
    height, width = frames.shape[-3:-1]
    padding = ((0, 0),) * (frames.ndim - 3) + ((0, -height % STRIDE), (0, -width % STRIDE), (0, 0))
    padded = np.pad(frames, padding, mode="edge") if any(after for _, after in padding) else frames
    return torch.from_numpy(np.ascontiguousarray(padded)).movedim(-1, -3)


def to_frames(x_hat: torch.Tensor, height: int, width: int) -> np.ndarray:
    """uint8 pixels (T, 3, H', W') or one frame (3, H', W') -> uint8 (T, height, width, 3) or (height, width, 3),
    cropped."""
    return x_hat[..., :height, :width].cpu().movedim(-3, -1).contiguous().numpy()


def _checked_frames(frames: Iterable[np.ndarray], segment_length: int) -> Iterator[np.ndarray]:
    """`frames`, each checked before it is buffered: uint8 (H, W, 3), all of the first frame's size, and no
    frame over MAX_FRAME_PIXELS or segment over MAX_SEGMENT_PIXELS. Raises ValueError, so a huge or changing input fails before it is held."""
    shape = None
    for index, frame in enumerate(frames):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frames must be uint8 (H, W, 3) arrays, got {frame.dtype} {frame.shape}")
        shape = shape or frame.shape
        if frame.shape != shape:
            raise ValueError(f"frame size changed from {shape[1]}x{shape[0]} to {frame.shape[1]}x{frame.shape[0]} "
                             f"at frame {index + 1}")
        if shape[0] * shape[1] > MAX_FRAME_PIXELS:
            raise ValueError(f"frames of {shape[1]}x{shape[0]} are over the limit of {MAX_FRAME_PIXELS} pixels per frame")
        in_segment = min(index + 1, segment_length)
        if in_segment * shape[0] * shape[1] > MAX_SEGMENT_PIXELS:
            raise ValueError(f"a segment of {in_segment} frames of {shape[1]}x{shape[0]} is over the limit of "
                             f"{MAX_SEGMENT_PIXELS} pixels per segment; use a shorter segment length or smaller frames")
        yield frame


def split_segments(frames: Iterable[np.ndarray], length: int) -> Iterator[Iterator[np.ndarray]]:
    """Split a stream of frames into segments of `length` frames (the last may be shorter), each an iterator over
    the shared stream, nothing buffered: read each segment to its end before asking for the next."""
    frames = iter(frames)
    for first in frames:
        yield itertools.chain([first], itertools.islice(frames, length - 1))


def group_segments(frames: Iterable[np.ndarray], length: int) -> Iterator[np.ndarray]:
    """Group a stream of (H, W, 3) frames into (T, H, W, 3) arrays of `length` frames (the last may be shorter)."""
    return (np.stack(list(segment)) for segment in split_segments(frames, length))


def segment_record(streams: Streams, quality_steps: int) -> Segment:
    """The file record of a model's coded streams at `quality_steps` (1/QUALITY_STEPS levels): f's stream is the
    record's f payload, the dynamic stream its z."""
    return Segment(frame_count=streams.frames, quality=quality_steps, f_symbols=streams.static_symbols,
                   z_symbols=streams.dynamic_symbols, f_payload=streams.static, z_payload=streams.dynamic)


def coded_streams(segment: Segment) -> Streams:
    """A file record's payloads as the streams a model decodes (the inverse of `segment_record`)."""
    return Streams(frames=segment.frame_count, static=segment.f_payload, dynamic=segment.z_payload,
                   static_symbols=segment.f_symbols, dynamic_symbols=segment.z_symbols)


@dataclass(frozen=True)
class EncodedSegment:
    """One coded segment and the frames the decoder will produce from it, uint8 (T, H, W, 3) (None where the
    encoder was asked for no reconstructions)."""

    segment: Segment
    reconstruction: np.ndarray | None

    @property
    def bits_per_frame(self) -> float:
        """Bits of the segment's record (payloads, fields and CRC) per frame."""
        return 8 * (len(self.segment.f_payload) + len(self.segment.z_payload) + RECORD_OVERHEAD) / self.segment.frame_count


RECORD_OVERHEAD = 10
"""Bytes of a segment record besides its payloads (its varint fields and CRC), as rate control counts them."""


@dataclass(frozen=True)
class Target:
    """What rate control aims each segment at: `bits_per_frame` (a bitrate divided by the frame rate), or
    `psnr` in dB (the segment's PSNR over all its pixels). Exactly one is set."""

    bits_per_frame: float | None = None
    psnr: float | None = None

    def __post_init__(self) -> None:
        if (self.bits_per_frame is None) == (self.psnr is None):
            raise ValueError("a rate-control target sets exactly one of bits_per_frame and psnr")
        if self.bits_per_frame is not None and not self.bits_per_frame > 0:
            raise ValueError(f"the target bitrate must be positive, got {self.bits_per_frame} bits per frame")

    def distance(self, coded: EncodedSegment, frames_uint8: np.ndarray) -> float:
        """How far `coded` is above the target (< 0: below) in the search's units: log2 of the rate ratio, or dB."""
        if self.bits_per_frame is not None:
            return float(np.log2(coded.bits_per_frame / self.bits_per_frame))
        return psnr(frames_uint8, coded.reconstruction) - self.psnr


SEARCH_TOLERANCE = {"bits_per_frame": np.log2(1.02), "psnr": 0.02}
"""A probe this close to the target (2% of the rate, 0.02 dB) ends a segment's quality search."""
MAX_PROBES = 7
"""Codings of one segment, at most, in a rate-control search (the two extreme levels included)."""


def quality_steps(quality: float, qualities: int) -> int:
    """`quality` (0 to qualities - 1) in the file's steps of 1/QUALITY_STEPS level, rounded to the nearest one;
    ValueError if it is out of range."""
    if not 0 <= quality <= qualities - 1:
        raise ValueError(f"quality must be 0..{qualities - 1}, got {quality:g}")
    return round(quality * QUALITY_STEPS)


def _register(card: zoo.ModelCard) -> None:
    """Worker initializer: make the parent's model (shipped, or a weights file registered there) known here."""
    zoo.MODELS.setdefault(card.name, card)


def _compress(model_name: str, device: str, size: tuple[int, int] | None, steps: int,
              frames: np.ndarray | Iterable[np.ndarray]) -> EncodedSegment:
    """Code one segment, uint8 (T, H, W, 3) or its (H, W, 3) frames (read once, in order, none held), at `steps`
    (1/QUALITY_STEPS levels) with a registered model (in this process or a worker); with its reconstruction
    if the frames' `size` = (height, width) is given."""
    model, _ = loaded_model(model_name, device)
    with codec_threads():
        streams, x_hat = model.compress_segment((to_model_input(frame).to(device) for frame in frames),
                                                steps / QUALITY_STEPS, reconstruct=size is not None)
    return EncodedSegment(segment_record(streams, steps), None if x_hat is None else to_frames(x_hat, *size))


def _compress_to_target(model_name: str, device: str, target: Target, reconstruct: bool,
                        frames_uint8: np.ndarray) -> EncodedSegment:
    """Code one segment at the quality step whose result is nearest to `target` (rate and PSNR grow with quality).

    The search codes the segment at the lowest and highest level, then at the step that a straight line through
    the bracketing probes (log-rate or dB against quality) puts on the target, narrowing the bracket, until a probe
    is within SEARCH_TOLERANCE, the bracket closes or MAX_PROBES codings are spent; it keeps the nearest probe.
    Depends on nothing but the segment, so any number of jobs writes the same bytes. The segment's reconstruction
    is kept if `reconstruct` (it is computed anyway for a PSNR target).
    """
    model, _ = loaded_model(model_name, device)
    tolerance = SEARCH_TOLERANCE["bits_per_frame" if target.bits_per_frame is not None else "psnr"]
    probes: dict[int, tuple[float, EncodedSegment]] = {}

    def probe(steps: int) -> float:
        size = frames_uint8.shape[1:3] if reconstruct or target.psnr is not None else None
        coded = _compress(model_name, device, size, steps, frames_uint8)
        probes[steps] = (target.distance(coded, frames_uint8), coded)
        return probes[steps][0]

    low, high = 0, (model.qualities - 1) * QUALITY_STEPS
    below, above = probe(low), probe(high)
    while below < -tolerance < tolerance < above and high - low > 1 and len(probes) < MAX_PROBES:
        steps = min(high - 1, max(low + 1, round(low + (high - low) * -below / (above - below))))
        distance = probe(steps)
        if abs(distance) <= tolerance:
            break
        low, below, high, above = (steps, distance, high, above) if distance < 0 else (low, below, steps, distance)
    return min(probes.values(), key=lambda item: abs(item[0]))[1]


def encode_stream(frames: Iterable[np.ndarray], out: BinaryIO, *, fps: Fraction = Fraction(25),
                  model_name: str = zoo.DEFAULT_MODEL, quality: float = DEFAULT_QUALITY,
                  target: Target | None = None, segment_length: int = DEFAULT_SEGMENT_LENGTH,
                  device: str = "cpu", jobs: int = 1, audio: bytes | None = None,
                  reconstructions: bool = True) -> Iterator[EncodedSegment]:
    """Encode frames into `out` (binary; written in order, never seeked), yielding each segment as it is written.

    Every segment is coded at `quality` (0 to the model's highest level, rounded to steps of 1/QUALITY_STEPS), or,
    with a `target` (then `quality` is not used), at the step `_compress_to_target` finds for it (several codings
    of each segment). `jobs` worker processes code segments in parallel (the same bytes for any number). `audio`
    (opaque bytes, a blob of `dsaecodec.audio`) is stored after the last segment; rate control counts only the
    video's bits. Each segment carries its reconstruction unless `reconstructions` is False (then the frames
    are not synthesised, and with one job and no target, they go to the model as they are read: no segment
    of pixels is held). The file is complete once the generator is exhausted. Raises ValueError for a bad
    quality or segment length, for no frames, for frames that change size, or for a frame or segment over
    MAX_FRAME_PIXELS or MAX_SEGMENT_PIXELS.
    """
    model, card = loaded_model(model_name, device)
    steps = None if target else quality_steps(quality, model.qualities)
    if not 1 <= segment_length <= 1024:
        raise ValueError(f"segment length must be 1..1024, got {segment_length}")
    frames = _checked_frames(frames, segment_length)
    first = next(frames, None)
    if first is None:
        raise ValueError("the input has no frames")
    height, width = first.shape[:2]
    model.latent_shape(height, width)  # ValueError for a frame size the model cannot code
    header = Header(model_name=card.name, weights_fingerprint=bytes.fromhex(card.sha256)[:FINGERPRINT_SIZE],
                    width=width, height=height, frame_count=0, fps_num=fps.numerator, fps_den=fps.denominator,
                    segment_length=segment_length)
    writer = BitstreamWriter(out, header)
    frames = itertools.chain([first], frames)
    if target:
        compress = functools.partial(_compress_to_target, card.name, device, target, reconstructions)
    else:
        compress = functools.partial(_compress, card.name, device, (height, width) if reconstructions else None, steps)
    if jobs == 1 and not target:  # each segment's frames go to the model as they are read
        coded_segments = map(compress, split_segments(frames, segment_length))
    else:  # workers and rate control's probes take whole segments
        coded_segments = ordered_map(compress, group_segments(frames, segment_length), jobs, _register, (card,))
    for coded in coded_segments:
        yield coded
        writer.write_segment(coded.segment)
    writer.close(audio=audio)


class Decoder:
    """Random-access decoder of a .dsae file: `decoder[k]` is segment k as uint8 (T, H, W, 3).

    Raises BitstreamError for a bad file and zoo.UnknownModelError for a model this installation lacks.
    """

    def __init__(self, source: bytes | BinaryIO, device: str = "cpu"):
        self.reader = BitstreamReader(source)
        self.header = self.reader.header
        frames, size = min(self.header.segment_length, self.header.frame_count), f"{self.header.width}x{self.header.height}"
        if self.header.width * self.header.height > MAX_FRAME_PIXELS:
            raise BitstreamError(f"file has frames of {size}, over this decoder's limit of {MAX_FRAME_PIXELS} pixels "
                                 "per frame")
        if frames * self.header.width * self.header.height > MAX_SEGMENT_PIXELS:
            raise BitstreamError(f"file has segments of {frames} frames of {size}, "
                                 f"over this decoder's limit of {MAX_SEGMENT_PIXELS} pixels per segment")
        self.card = zoo.card_for(self.header.model_name, self.header.weights_fingerprint.hex())
        self.device = device
        self.model, _ = loaded_model(self.card.name, device)
        try:
            self.latent_shape = self.model.latent_shape(self.header.height, self.header.width)
        except ValueError as error:
            raise BitstreamError(f"file of {self.card.name}: {error}") from None

    def __len__(self) -> int:
        return len(self.reader)

    def read(self, k: int) -> tuple[Streams, float]:
        """(segment k's coded streams, its quality), its record's CRC, symbol counts and quality checked against
        the model and geometry."""
        segment = self.reader.read_segment(k)
        expected = self.model.symbol_counts(segment.frame_count, self.latent_shape)
        if (segment.f_symbols, segment.z_symbols) != expected:
            raise BitstreamError(f"segment {k} holds {segment.f_symbols}+{segment.z_symbols} symbols, "
                                 f"the geometry needs {expected[0]}+{expected[1]}")
        quality = segment.quality / QUALITY_STEPS
        if quality > self.model.qualities - 1:
            raise BitstreamError(f"segment {k} has quality {quality:g}, out of range for model {self.card.name} "
                                 f"(0..{self.model.qualities - 1})")
        return coded_streams(segment), quality

    def qualities(self) -> list[float]:
        """Each segment's quality, read from the records' fields (payloads are not read)."""
        return [self.reader.segment_quality(k) / QUALITY_STEPS for k in range(len(self))]

    def __getitem__(self, k: int) -> np.ndarray:
        return self._segment_decoder(self.read(k))

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.segments(range(len(self)))

    def segments(self, indices: Iterable[int], jobs: int = 1) -> Iterator[np.ndarray]:
        """Segments `indices` decoded, in order, by `jobs` worker processes (the same frames for any number)."""
        return ordered_map(self._segment_decoder, (self.read(k) for k in indices), jobs, _register, (self.card,))

    def frames(self, indices: Iterable[int], jobs: int = 1) -> Iterator[np.ndarray]:
        """The frames (H, W, 3) of segments `indices`, in order: as `segments` gives them, but with one job each frame
        is synthesised when it is asked for, so that no segment of pixels is held."""
        if jobs > 1:
            return itertools.chain.from_iterable(self.segments(indices, jobs))
        return itertools.chain.from_iterable(_decoded_frames(self.card.name, self.device, self.latent_shape,
                                                             (self.header.height, self.header.width), self.read(k))
                                             for k in indices)

    @property
    def _segment_decoder(self) -> functools.partial:
        return functools.partial(_decompress, self.card.name, self.device, self.latent_shape,
                                 (self.header.height, self.header.width))


def _decoded_frames(model_name: str, device: str, latent_shape: tuple[int, int], size: tuple[int, int],
                    coded: tuple[Streams, float]) -> Iterator[np.ndarray]:
    """Decode one segment's (streams, quality), as `Decoder.read` gives them, with a registered model (in this
    process or a worker): its frames, uint8 (H, W, 3) cropped to `size` = (height, width), one at a time (the
    codec's one-thread rule holds while each is computed, not while the caller has it)."""
    streams, quality = coded
    model, _ = loaded_model(model_name, device)
    frames = model.decompress_frames(streams, quality, latent_shape)
    while True:
        with codec_threads():
            x_hat = next(frames, None)
        if x_hat is None:
            return
        yield to_frames(x_hat, *size)


def _decompress(model_name: str, device: str, latent_shape: tuple[int, int], size: tuple[int, int],
                coded: tuple[Streams, float]) -> np.ndarray:
    """`_decoded_frames`, stacked: uint8 (T, H, W, 3)."""
    return np.stack(list(_decoded_frames(model_name, device, latent_shape, size, coded)))


def encode(frames: Iterable[np.ndarray], *, fps: Fraction = Fraction(25), model_name: str = zoo.DEFAULT_MODEL,
           quality: float = DEFAULT_QUALITY, target: Target | None = None,
           segment_length: int = DEFAULT_SEGMENT_LENGTH, jobs: int = 1) -> bytes:
    """Frames (each uint8 (H, W, 3)) -> the bytes of a .dsae file (see `encode_stream`)."""
    out = io.BytesIO()
    for _ in encode_stream(frames, out, fps=fps, model_name=model_name, quality=quality, target=target,
                           segment_length=segment_length, jobs=jobs):
        pass
    return out.getvalue()


def decode(data: bytes) -> np.ndarray:
    """The bytes of a .dsae file -> uint8 (N, H, W, 3)."""
    return np.concatenate(list(Decoder(data)))


@torch.no_grad()
def generate(frames: int, *, model_name: str = zoo.DEFAULT_MODEL, quality: float = DEFAULT_QUALITY,
             size: tuple[int, int] = (64, 64), segment_length: int = DEFAULT_SEGMENT_LENGTH,
             content: Decoder | None = None, motion: Decoder | None = None, seed: int = 0) -> Iterator[np.ndarray]:
    """Controlled generation from a DSAE's priors, segment by segment (uint8 (T, H, W, 3) each).

    f comes from `content`'s segments (cycled) or is drawn from its learned density; z_1:T comes from
    `motion`'s segments or is drawn from the ConvLSTM prior. With a file given, its model, frame size and
    segment length are used (`model_name`, `size`, `segment_length` are ignored), a latent drawn for segment k
    is drawn at the quality of the file's segment k (`quality` is ignored), and with `motion` the clip has the
    motion file's length at most.
    """
    given = [d for d in (content, motion) if d is not None]
    if given:
        header = given[0].header
        for other in given[1:]:
            if (other.header.model_name, other.header.weights_fingerprint, other.header.width,
                    other.header.height) != (header.model_name, header.weights_fingerprint, header.width, header.height):
                raise ValueError("--content and --motion files must share model and frame size")
        model = given[0].model
        width, height, segment_length = header.width, header.height, header.segment_length
        if motion is not None:
            frames = min(frames, motion.header.frame_count)
    else:
        model, _ = loaded_model(model_name)
        width, height = size
        quality = quality_steps(quality, model.qualities) / QUALITY_STEPS
    if not model.has_static_latent:
        raise ValueError("generation needs a DSAE with a static latent f")
    rng = np.random.default_rng(seed)
    shape = model.latent_shape(height, width)
    for k, start in enumerate(range(0, frames, segment_length)):
        length = min(segment_length, frames - start)
        f_coded = content.read(k % len(content)) if content else None
        z_coded = motion.read(k) if motion else None
        quality = (z_coded or f_coded or (None, quality))[1]  # of the latent that is not drawn, if there is one
        with codec_threads():
            f_hat = model.decode_f(*f_coded, shape) if f_coded else model.sample_f(quality, shape, rng)
            z_hat = (model.decode_z(*z_coded, shape)[:, :length] if z_coded
                     else model.sample_z(quality, length, shape, rng))
            x_hat = model.synthesise(z_hat, f_hat, pixels=True)[0]
        yield to_frames(x_hat, height, width)
