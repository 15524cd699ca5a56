"""The `.dsae` container: header, segment records, an optional audio record, index of record sizes, trailer.

Fixed-size integers are little-endian and unsigned; "varint" is an unsigned LEB128 number (7 bits a byte, low
bits first, the high bit set on every byte but the last) in its one canonical (shortest) encoding: a reader
rejects an overlong one (such as 0x80 0x00 for 0), one over its field's bound, and one cut off. Records are
contiguous: segment 0 starts right after the header, segment k + 1 right after segment k, the audio record (if
any) right after the last segment, the index right after that, and the trailer ends the file. Nothing is written
twice, so the writer never seeks.

| part     | field           | type          | notes                                            |
|----------|-----------------|---------------|--------------------------------------------------|
| header   | magic           | 4 B           | b"DSAE"                                          |
|          | version         | u8            | FORMAT_VERSION (7)                               |
|          | name_len        | u8            | 1..64                                            |
|          | model_name      | name_len B    | printable ASCII                                  |
|          | weights_fingerprint | 8 B       | first 8 bytes of the weights file's sha256       |
|          | width, height   | varint each   | 1..16384 pixels                                  |
|          | fps_num, fps_den| varint each   | 1..2**31-1 each                                  |
|          | segment_length  | varint        | 1..1024 frames                                   |
|          | crc32           | u32           | over all preceding header bytes                  |
| segment  | frame_count     | varint        | segment_length, except the last (1..)            |
| (× count)| quality         | varint        | 0..4080: the quality level in QUALITY_STEPS (16) |
|          |                 |               | steps a level, e.g. 40 for level 2.5             |
|          | f_symbols       | varint        | 0..2**31                                         |
|          | f_len           | varint        | bytes of f_payload, 0..2**32-1                   |
|          | z_symbols       | varint        | 0..2**31                                         |
|          | z_len           | varint        | bytes of z_payload, 0..2**32-1                   |
|          | crc32           | u32           | over the field bytes above and both payloads     |
|          | f_payload       | f_len B       |                                                  |
|          | z_payload       | z_len B       |                                                  |
| audio    | audio           | audio_len B   | opaque here: the sound, a small audio-only file  |
| (0 or 1) |                 |               | (dsaecodec.audio writes and reads it)            |
|          | crc32           | u32           | over the audio bytes                             |
| index    | frame_count     | varint        | 1..2**24 frames in the file                      |
|          | count           | varint        | == ceil(frame_count / segment_length)            |
|          | sizes           | count × varint| bytes of each segment record (offsets are their  |
|          |                 |               | running sum from the end of the header)          |
|          | audio_len       | varint        | 0 (no audio record) or 1..2**31 bytes of audio;  |
|          |                 |               | the sizes, plus audio_len + 4 if it is not 0,    |
|          |                 |               | sum to the space between header and index        |
|          | crc32           | u32           | over all of the index before it                  |
| trailer  | index_size      | u32           | bytes of the index, crc32 included: the index    |
|          |                 |               | starts at file size - 8 - index_size             |
|          | magic           | 4 B           | b"DSAE"                                          |

Besides its payloads, a one-segment file of 8 frames of 64x64 at 25 fps with a 16-character model name (such as
dsae-sprites-f64's, 64 f and 256 z symbols) takes 39 B of header, 11 B of record fields and CRC, 8 B of index and
8 B of trailer: 66 B, where version 2 took 81 + 22 + 16 + 12 = 131 B. Sound costs its own bytes and 4 B of CRC, and
1 to 4 B more of index.

A reader checks every field against these bounds and every length against the file size before reading, so any
malformed input ends in one `BitstreamError`. A file of another version (versions 2 to 5 included: their files
are not read) gets "unsupported format version N". The payloads are opaque here; `bitstream.coder` writes them
(big-endian 32-bit words, trailing zero bytes dropped). So is the audio: `BitstreamWriter.close(audio=...)` stores
bytes, `BitstreamReader.read_audio()` gives them back, CRC checked; only `dsaecodec.audio` (PyAV) looks inside.
"""
from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"DSAE"
FORMAT_VERSION = 7  # 3: varint fields, 8-byte weights fingerprint, frame count and record sizes in the index;
# 4: the quality is a segment's, in steps of 1/QUALITY_STEPS level (it was the header's, a whole level);
# 5: an optional audio record after the last segment, its size in the index;
# 6: the same container; the payloads are coded under integer entropy models (dsaecodec/integer.py), so that
# they decode on any machine;
# 7: the same container; the RNN codecs' payloads are coded by their decoding loop run in integer arithmetic

MAX_NAME_LENGTH = 64
MAX_DIMENSION = 16384
MAX_FRAMES = 2**24
MAX_FPS_TERM = 2**31 - 1
MAX_SEGMENT_LENGTH = 1024
MAX_SYMBOLS = 2**31
MAX_PAYLOAD_SIZE = 2**32 - 1
MAX_AUDIO_SIZE = 2**31
"""Most bytes of sound in a file (2 GiB: 37 hours at 128 kbit/s)."""
FINGERPRINT_SIZE = 8
QUALITY_STEPS = 16
"""A segment's quality is stored as an integer number of 1/QUALITY_STEPS steps of a level: level 2.5 is 40."""
MAX_QUALITY = 255 * QUALITY_STEPS

_PREFIX = struct.Struct("<4sBB")  # magic, version, name_len
_CRC = struct.Struct("<I")
_TRAILER = struct.Struct("<I4s")  # index_size, magic
# (attribute, what an error calls it, bound) of the varints of the header and of a segment record, in file order
_HEADER_VARINTS = (("width", "width", MAX_DIMENSION), ("height", "height", MAX_DIMENSION),
                   ("fps_num", "fps numerator", MAX_FPS_TERM), ("fps_den", "fps denominator", MAX_FPS_TERM),
                   ("segment_length", "segment length", MAX_SEGMENT_LENGTH))
_RECORD_VARINTS = (("frame_count", "frame count", MAX_SEGMENT_LENGTH), ("quality", "quality", MAX_QUALITY),
                   ("f_symbols", "f symbol count", MAX_SYMBOLS),
                   ("f_len", "f payload size", MAX_PAYLOAD_SIZE),
                   ("z_symbols", "z symbol count", MAX_SYMBOLS),
                   ("z_len", "z payload size", MAX_PAYLOAD_SIZE))


def _varint_size(value: int) -> int:
    """Bytes of the canonical varint of `value` >= 0."""
    return max(1, -(-value.bit_length() // 7))


_MAX_FIELDS_SIZE = sum(_varint_size(bound) for _, _, bound in _RECORD_VARINTS)  # 24 bytes
_MIN_RECORD_SIZE = len(_RECORD_VARINTS) + _CRC.size  # one byte a field, the CRC, empty payloads: 10 bytes
_MAX_RECORD_SIZE = _MAX_FIELDS_SIZE + _CRC.size + 2 * MAX_PAYLOAD_SIZE
_MIN_INDEX_SIZE = 4 + _CRC.size  # frame count, count, one size and audio_len of one byte each, the CRC


class BitstreamError(Exception):
    """A .dsae file is truncated, corrupted, foreign or of a newer version; str() is one clear sentence."""


class _TruncatedVarint(ValueError):
    """A varint runs past the end of the bytes it was read from."""


def write_varint(value: int, bound: int) -> bytes:
    """The canonical unsigned LEB128 encoding of `value`; ValueError unless 0 <= value <= bound."""
    _check_range("varint", value, 0, bound)
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(data: bytes, position: int, bound: int, name: str) -> tuple[int, int]:
    """(value, position after it) of the varint at data[position:]. ValueError naming `name` if it is over
    `bound`, not in its shortest encoding or longer than any value up to `bound` needs, _TruncatedVarint (a
    ValueError) if `data` ends inside it."""
    value = shift = 0
    end = min(len(data), position + _varint_size(bound))
    for i in range(position, end):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if value > bound:
            raise ValueError(f"{name} is over its bound of {bound}")
        if byte < 0x80:
            if byte == 0 and i > position:
                raise ValueError(f"{name} is not in its shortest encoding")
            return value, i + 1
        shift += 7
    if end < position + _varint_size(bound):
        raise _TruncatedVarint(f"{name} is cut off")
    longest = _varint_size(bound)
    raise ValueError(f"{name} takes more than the {longest} byte{'s' * (longest > 1)} its bound of {bound} needs")


def _check_range(name: str, value: int, low: int, high: int) -> None:
    """Raise ValueError unless low <= value <= high."""
    if not low <= value <= high:
        raise ValueError(f"{name} {value} is out of range {low}..{high}")


@dataclass(frozen=True)
class Header:
    """What a decoder needs before the first segment. Raises ValueError for out-of-range fields."""

    model_name: str  # printable ASCII, 1..64 characters
    weights_fingerprint: bytes  # exactly 8 bytes: the first 8 bytes of the weights file's sha256
    width: int  # pixels, 1..16384
    height: int  # pixels, 1..16384
    frame_count: int  # stored in the index: 1..2**24 from a reader; ignored (0) by a writer, which counts itself
    fps_num: int  # frames per second = fps_num / fps_den, each 1..2**31-1
    fps_den: int
    segment_length: int  # frames per segment, 1..1024

    def __post_init__(self) -> None:
        if not (self.model_name.isascii() and self.model_name.isprintable()):
            raise ValueError(f"model name {self.model_name!r} is not printable ASCII")
        _check_range("model name length", len(self.model_name), 1, MAX_NAME_LENGTH)
        if len(self.weights_fingerprint) != FINGERPRINT_SIZE:
            raise ValueError(f"weights fingerprint must be {FINGERPRINT_SIZE} bytes, "
                             f"got {len(self.weights_fingerprint)}")
        _check_range("width", self.width, 1, MAX_DIMENSION)
        _check_range("height", self.height, 1, MAX_DIMENSION)
        _check_range("frame count", self.frame_count, 0, MAX_FRAMES)
        _check_range("fps numerator", self.fps_num, 1, MAX_FPS_TERM)
        _check_range("fps denominator", self.fps_den, 1, MAX_FPS_TERM)
        _check_range("segment length", self.segment_length, 1, MAX_SEGMENT_LENGTH)

    @property
    def segment_count(self) -> int:
        """ceil(frame_count / segment_length)."""
        return -(-self.frame_count // self.segment_length)


@dataclass(frozen=True)
class Segment:
    """One segment's two entropy-coded payloads (opaque bytes here), their symbol counts and the quality they
    were coded at."""

    frame_count: int  # 1..segment_length
    quality: int  # steps of 1/QUALITY_STEPS level, 0..MAX_QUALITY
    f_symbols: int  # number of symbols coded in f_payload, 0..2**31
    z_symbols: int  # number of symbols coded in z_payload, 0..2**31
    f_payload: bytes
    z_payload: bytes

    def __post_init__(self) -> None:
        _check_range("segment frame count", self.frame_count, 1, MAX_SEGMENT_LENGTH)
        _check_range("quality", self.quality, 0, MAX_QUALITY)
        _check_range("f symbol count", self.f_symbols, 0, MAX_SYMBOLS)
        _check_range("z symbol count", self.z_symbols, 0, MAX_SYMBOLS)
        _check_range("f payload size", len(self.f_payload), 0, MAX_PAYLOAD_SIZE)
        _check_range("z payload size", len(self.z_payload), 0, MAX_PAYLOAD_SIZE)


def _pack_header(header: Header) -> bytes:
    """The header's bytes, CRC included."""
    name = header.model_name.encode("ascii")
    body = (_PREFIX.pack(MAGIC, FORMAT_VERSION, len(name)) + name + header.weights_fingerprint
            + b"".join(write_varint(getattr(header, attr), bound) for attr, _, bound in _HEADER_VARINTS))
    return body + _CRC.pack(zlib.crc32(body))


def _record_crc(fields: bytes, f_payload: bytes, z_payload: bytes) -> int:
    """CRC32 of a record's field bytes and both payloads."""
    return zlib.crc32(z_payload, zlib.crc32(f_payload, zlib.crc32(fields)))


class BitstreamWriter:
    """Writes a .dsae file segment by segment to a binary file object, from its current position (byte 0 of the
    .dsae file). It only ever calls `fileobj.write`: a pipe or socket will do.

    Call `close()` once all segments are written; it does not close `fileobj`. A file whose writer was never
    closed has no index: readers reject it as incomplete. The header's frame_count is ignored (the index holds
    the number of frames written).
    """

    def __init__(self, fileobj: BinaryIO, header: Header) -> None:
        self._file = fileobj
        self._header = dataclasses.replace(header, frame_count=0)
        self._sizes: list[int] = []  # bytes of each record written
        self._frames = 0
        self._last_was_full = True
        self._closed = False
        fileobj.write(_pack_header(self._header))

    def write_segment(self, segment: Segment) -> None:
        """Append one segment record. Only the last segment may hold fewer than segment_length frames."""
        if self._closed:
            raise ValueError("write_segment() after close()")
        if not self._last_was_full:
            raise ValueError("only the last segment may be shorter than segment_length")
        _check_range("segment frame count", segment.frame_count, 1, self._header.segment_length)
        _check_range("total frame count", self._frames + segment.frame_count, 1, MAX_FRAMES)
        values = {"frame_count": segment.frame_count, "quality": segment.quality, "f_symbols": segment.f_symbols,
                  "f_len": len(segment.f_payload),
                  "z_symbols": segment.z_symbols, "z_len": len(segment.z_payload)}
        fields = b"".join(write_varint(values[attr], bound) for attr, _, bound in _RECORD_VARINTS)
        crc = _CRC.pack(_record_crc(fields, segment.f_payload, segment.z_payload))
        self._file.write(fields + crc)
        self._file.write(segment.f_payload)
        self._file.write(segment.z_payload)
        self._sizes.append(len(fields) + len(crc) + len(segment.f_payload) + len(segment.z_payload))
        self._frames += segment.frame_count
        self._last_was_full = segment.frame_count == self._header.segment_length

    def close(self, audio: bytes | None = None) -> None:
        """Write the audio record (if `audio` is given: 1..MAX_AUDIO_SIZE opaque bytes), the index and the trailer.
        Needs at least one segment."""
        if self._closed:
            return
        if not self._sizes:
            raise ValueError("a .dsae file needs at least one segment")
        if audio is not None:
            _check_range("audio size", len(audio), 1, MAX_AUDIO_SIZE)
            self._file.write(audio)
            self._file.write(_CRC.pack(zlib.crc32(audio)))
        index = (write_varint(self._frames, MAX_FRAMES) + write_varint(len(self._sizes), MAX_FRAMES)
                 + b"".join(write_varint(size, _MAX_RECORD_SIZE) for size in self._sizes)
                 + write_varint(0 if audio is None else len(audio), MAX_AUDIO_SIZE))
        index += _CRC.pack(zlib.crc32(index))
        self._file.write(index + _TRAILER.pack(len(index), MAGIC))
        self._closed = True


class BitstreamReader:
    """Random access to the segments of a .dsae file (a seekable binary file object or bytes).

    The constructor validates header, trailer and index; `read_segment` validates one record, `read_audio` the
    audio record. Every problem with the data raises BitstreamError. Not thread-safe (reads seek the source).
    """

    header: Header  # frame_count filled from the index
    audio_size: int  # bytes of sound in the file (its audio record less the CRC); 0: the file has none

    def __init__(self, source: BinaryIO | bytes) -> None:
        self._file = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
        self._size = self._file.seek(0, io.SEEK_END)
        header, header_size = self._read_header()
        frame_count, self._offsets, self.audio_size = self._read_index(header_size, header.segment_length)
        self.header = dataclasses.replace(header, frame_count=frame_count)

    def __len__(self) -> int:
        """Number of segments."""
        return len(self._offsets) - 1

    def read_segment(self, k: int) -> Segment:
        """Segment k, 0 <= k < len(self), with its CRC and fields checked."""
        fields, values, crc = self._read_record_fields(k)
        f_len, z_len = values["f_len"], values["z_len"]
        payloads = self._read(self._offsets[k] + len(fields) + _CRC.size, f_len + z_len)
        f_payload, z_payload = payloads[:f_len], payloads[f_len:]
        if _record_crc(fields, f_payload, z_payload) != crc:
            raise BitstreamError(f"segment {k} is corrupted (CRC mismatch)")
        expected = min(self.header.segment_length, self.header.frame_count - k * self.header.segment_length)
        if values["frame_count"] != expected:
            raise BitstreamError(f"segment {k} holds {values['frame_count']} frames where the index implies {expected}")
        try:
            return Segment(values["frame_count"], values["quality"], values["f_symbols"], values["z_symbols"],
                           f_payload, z_payload)
        except ValueError as error:
            raise BitstreamError(f"segment {k} is invalid ({error})") from None

    def read_audio(self) -> bytes | None:
        """The file's sound (the bytes given to `BitstreamWriter.close`), its CRC checked; None if it has none."""
        if not self.audio_size:
            return None
        record = self._read(self._offsets[-1], self.audio_size + _CRC.size)
        audio, (crc,) = record[:-_CRC.size], _CRC.unpack(record[-_CRC.size:])
        if zlib.crc32(audio) != crc:
            raise BitstreamError("audio record is corrupted (CRC mismatch)")
        return audio

    def segment_sizes(self, k: int) -> tuple[int, int]:
        """(f_payload bytes, z_payload bytes) of segment k, without reading the payloads."""
        _, values, _ = self._read_record_fields(k)
        return values["f_len"], values["z_len"]

    def segment_quality(self, k: int) -> int:
        """Segment k's quality in steps of 1/QUALITY_STEPS level, without reading the payloads."""
        return self._read_record_fields(k)[1]["quality"]

    def _read(self, offset: int, size: int) -> bytes:
        """Exactly `size` bytes at `offset`, or BitstreamError if they are not all in the file."""
        if offset < 0 or size < 0 or offset + size > self._size:
            raise BitstreamError("file is truncated")
        self._file.seek(offset)
        data = self._file.read(size)
        if len(data) != size:
            raise BitstreamError("file is truncated")
        return data

    def _read_header(self) -> tuple[Header, int]:
        """Parse and validate the header (frame_count 0); return it and its size in bytes."""
        if not MAGIC.startswith(self._read(0, min(self._size, len(MAGIC)))):
            raise BitstreamError("not a .dsae file (bad magic)")
        _, version, name_len = _PREFIX.unpack(self._read(0, _PREFIX.size))
        if version != FORMAT_VERSION:
            raise BitstreamError(f"unsupported format version {version} (this decoder reads version {FORMAT_VERSION})")
        if not 1 <= name_len <= MAX_NAME_LENGTH:
            raise BitstreamError(f"file header is invalid (model name length {name_len} is out of range "
                                 f"1..{MAX_NAME_LENGTH})")
        fixed = _PREFIX.size + name_len + FINGERPRINT_SIZE
        longest = fixed + sum(_varint_size(bound) for _, _, bound in _HEADER_VARINTS) + _CRC.size
        data = self._read(0, min(self._size, longest))  # the whole header, unless the file is shorter
        if fixed > len(data):
            raise BitstreamError("file is truncated")
        position, values = fixed, {}
        try:
            for attr, name, bound in _HEADER_VARINTS:
                values[attr], position = read_varint(data, position, bound, name)
        except _TruncatedVarint:
            raise BitstreamError("file is truncated") from None
        except ValueError as error:
            raise BitstreamError(f"file header is invalid ({error})") from None
        size = position + _CRC.size
        if size > len(data):
            raise BitstreamError("file is truncated")
        (crc,) = _CRC.unpack(data[position:size])
        if zlib.crc32(data[:position]) != crc:
            raise BitstreamError("file header is corrupted (CRC mismatch)")
        name = data[_PREFIX.size:_PREFIX.size + name_len]
        try:
            header = Header(name.decode("ascii"), data[_PREFIX.size + name_len:fixed], frame_count=0, **values)
        except (UnicodeDecodeError, ValueError) as error:
            raise BitstreamError(f"file header is invalid ({error})") from None
        return header, size

    def _read_index(self, header_size: int, segment_length: int) -> tuple[int, list[int], int]:
        """(frame count, segment offsets followed by where the last segment ends, audio size), validated."""
        incomplete = BitstreamError("file is incomplete (no index at its end: it is truncated, or its writer was "
                                    "never closed)")
        if self._size < header_size + _TRAILER.size:
            raise incomplete
        index_size, magic = _TRAILER.unpack(self._read(self._size - _TRAILER.size, _TRAILER.size))
        if magic != MAGIC:
            raise incomplete
        space = self._size - _TRAILER.size - header_size  # for the records and the index
        if not _MIN_INDEX_SIZE <= index_size <= space - _MIN_RECORD_SIZE:
            raise BitstreamError(f"file is corrupted (the index size in its trailer, {index_size} bytes, does not "
                                 f"fit the file)")
        index_offset = self._size - _TRAILER.size - index_size
        index = self._read(index_offset, index_size)
        (crc,) = _CRC.unpack(index[-_CRC.size:])
        body = index[:-_CRC.size]
        if zlib.crc32(body) != crc:
            raise BitstreamError("segment index is corrupted (CRC mismatch)")
        try:
            frame_count, position = read_varint(body, 0, MAX_FRAMES, "frame count")
            count, position = read_varint(body, position, MAX_FRAMES, "segment count")
            if frame_count == 0:
                raise ValueError("frame count is 0")
            expected = -(-frame_count // segment_length)
            if count != expected:
                raise ValueError(f"{count} entries where its {frame_count} frames in segments of {segment_length} "
                                 f"imply {expected}")
            sizes = []
            for k in range(count):
                size, position = read_varint(body, position, min(index_offset - header_size, _MAX_RECORD_SIZE),
                                             f"size of segment {k}")
                sizes.append(size)
            audio_size, position = read_varint(body, position, MAX_AUDIO_SIZE, "audio size")
            if position != len(body):
                extra = len(body) - position
                raise ValueError(f"{extra} byte{'s' * (extra > 1)} after its last entry")
        except ValueError as error:
            raise BitstreamError(f"segment index is invalid ({error})") from None
        if min(sizes) < _MIN_RECORD_SIZE:
            raise BitstreamError(f"segment index is invalid (segment {sizes.index(min(sizes))} is smaller than any "
                                 f"record)")
        if sum(sizes) + (audio_size + _CRC.size if audio_size else 0) != index_offset - header_size:
            records = "segments and audio record" if audio_size else "segments"
            raise BitstreamError(f"segment index is invalid (its {records} do not exactly fill the space between "
                                 "header and index)")
        offsets = [header_size]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        return frame_count, offsets, audio_size

    def _read_record_fields(self, k: int) -> tuple[bytes, dict[str, int], int]:
        """Segment k's field bytes, their values and its stored CRC, the sizes checked against the index."""
        if not 0 <= k < len(self):
            raise IndexError(f"segment {k} out of range (file has {len(self)} segments)")
        start, size = self._offsets[k], self._offsets[k + 1] - self._offsets[k]
        head = self._read(start, min(size, _MAX_FIELDS_SIZE + _CRC.size))
        room, position, values = min(size - _CRC.size, _MAX_FIELDS_SIZE), 0, {}
        try:
            for attr, name, bound in _RECORD_VARINTS:
                values[attr], position = read_varint(head[:room], position, bound, name)
        except _TruncatedVarint as error:
            raise BitstreamError(f"segment {k} is corrupted ({error} by the end of its record)") from None
        except ValueError as error:
            raise BitstreamError(f"segment {k} is invalid ({error})") from None
        if position + _CRC.size + values["f_len"] + values["z_len"] != size:
            raise BitstreamError(f"segment {k} is corrupted (its size does not match the index)")
        (crc,) = _CRC.unpack(head[position:position + _CRC.size])
        return head[:position], values, crc
