"""The `.dsae` container: header, segment records, index of segment offsets, trailer.

All integers are little-endian and unsigned; offsets are bytes from the start of the file.
Records are contiguous: segment 0 starts right after the header, segment k + 1 right after
segment k, the index right after the last segment, and the trailer ends the file.

| part     | field           | type          | notes                                            |
|----------|-----------------|---------------|--------------------------------------------------|
| header   | magic           | 4 B           | b"DSAE"                                          |
|          | version         | u8            | FORMAT_VERSION                                   |
|          | name_len        | u8            | 1..64                                            |
|          | model_name      | name_len B    | printable ASCII                                  |
|          | weights_sha256  | 32 B          |                                                  |
|          | width, height   | u32, u32      | 1..16384 pixels                                  |
|          | frame_count     | u32           | 1..2**24 (0 until the writer is closed)          |
|          | fps_num, fps_den| u32, u32      | 1..2**31-1 each                                  |
|          | segment_length  | u16           | 1..1024 frames                                   |
|          | quality         | u8            | 0..255                                           |
|          | crc32           | u32           | over all preceding header bytes                  |
| segment  | frame_count     | u16           | segment_length, except the last (1..)            |
| (× count)| f_symbols       | u32           | 0..2**31                                         |
|          | f_len           | u32           | bytes of f_payload                               |
|          | z_symbols       | u32           | 0..2**31                                         |
|          | z_len           | u32           | bytes of z_payload                               |
|          | crc32           | u32           | over the 18 bytes above and both payloads        |
|          | f_payload       | f_len B       |                                                  |
|          | z_payload       | z_len B       |                                                  |
| index    | count           | u32           | == ceil(frame_count / segment_length)            |
|          | offsets         | count × u64   | offset of each segment record                    |
|          | crc32           | u32           | over count and offsets                           |
| trailer  | index_offset    | u64           | == file size - 20 - 8 * count                    |
|          | magic           | 4 B           | b"DSAE"                                          |

A reader checks every field against these bounds and every length against the file size
before reading, so any malformed input ends in one `BitstreamError`. The payloads are opaque here;
`bitstream.coder` writes them (since version 2: big-endian 32-bit words, trailing zero bytes dropped).
"""
from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"DSAE"
FORMAT_VERSION = 2  # 2: payloads are big-endian words with the trailing zero bytes dropped

MAX_NAME_LENGTH = 64
MAX_DIMENSION = 16384
MAX_FRAMES = 2**24
MAX_FPS_TERM = 2**31 - 1
MAX_SEGMENT_LENGTH = 1024
MAX_SYMBOLS = 2**31

_PREFIX = struct.Struct("<4sBB")  # magic, version, name_len
# sha256, width, height, frame_count, fps_num, fps_den, segment_length, quality
_GEOMETRY = struct.Struct("<32sIIIIIHB")
_CRC = struct.Struct("<I")
_FIELDS = struct.Struct("<HIIII")  # segment record: frame_count, f_symbols, f_len, z_symbols, z_len
_RECORD_SIZE = _FIELDS.size + _CRC.size
_COUNT = struct.Struct("<I")
_OFFSET = struct.Struct("<Q")
_TRAILER = struct.Struct("<Q4s")  # index_offset, magic


class BitstreamError(Exception):
    """A .dsae file is truncated, corrupted, foreign or of a newer version; str() is one clear sentence."""


def _check_range(name: str, value: int, low: int, high: int) -> None:
    """Raise ValueError unless low <= value <= high."""
    if not low <= value <= high:
        raise ValueError(f"{name} {value} is out of range {low}..{high}")


@dataclass(frozen=True)
class Header:
    """What a decoder needs before the first segment. Raises ValueError for out-of-range fields."""

    model_name: str  # printable ASCII, 1..64 characters
    weights_sha256: bytes  # exactly 32 bytes
    width: int  # pixels, 1..16384
    height: int  # pixels, 1..16384
    frame_count: int  # 0 while writing; 1..2**24 in a finished file
    fps_num: int  # frames per second = fps_num / fps_den, each 1..2**31-1
    fps_den: int
    segment_length: int  # frames per segment, 1..1024
    quality: int  # 0..255

    def __post_init__(self) -> None:
        if not (self.model_name.isascii() and self.model_name.isprintable()):
            raise ValueError(f"model name {self.model_name!r} is not printable ASCII")
        _check_range("model name length", len(self.model_name), 1, MAX_NAME_LENGTH)
        if len(self.weights_sha256) != 32:
            raise ValueError(f"weights_sha256 must be 32 bytes, got {len(self.weights_sha256)}")
        _check_range("width", self.width, 1, MAX_DIMENSION)
        _check_range("height", self.height, 1, MAX_DIMENSION)
        _check_range("frame count", self.frame_count, 0, MAX_FRAMES)
        _check_range("fps numerator", self.fps_num, 1, MAX_FPS_TERM)
        _check_range("fps denominator", self.fps_den, 1, MAX_FPS_TERM)
        _check_range("segment length", self.segment_length, 1, MAX_SEGMENT_LENGTH)
        _check_range("quality", self.quality, 0, 255)

    @property
    def segment_count(self) -> int:
        """ceil(frame_count / segment_length)."""
        return -(-self.frame_count // self.segment_length)


@dataclass(frozen=True)
class Segment:
    """One segment's two entropy-coded payloads (opaque bytes here) and their symbol counts."""

    frame_count: int  # 1..segment_length
    f_symbols: int  # number of symbols coded in f_payload, 0..2**31
    z_symbols: int  # number of symbols coded in z_payload, 0..2**31
    f_payload: bytes
    z_payload: bytes

    def __post_init__(self) -> None:
        _check_range("segment frame count", self.frame_count, 1, MAX_SEGMENT_LENGTH)
        _check_range("f symbol count", self.f_symbols, 0, MAX_SYMBOLS)
        _check_range("z symbol count", self.z_symbols, 0, MAX_SYMBOLS)
        _check_range("f payload size", len(self.f_payload), 0, 2**32 - 1)
        _check_range("z payload size", len(self.z_payload), 0, 2**32 - 1)


def _pack_header(header: Header) -> bytes:
    """The header's bytes, CRC included."""
    name = header.model_name.encode("ascii")
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(name)) + name + _GEOMETRY.pack(
        header.weights_sha256, header.width, header.height, header.frame_count,
        header.fps_num, header.fps_den, header.segment_length, header.quality)
    return body + _CRC.pack(zlib.crc32(body))


def _record_crc(fields: bytes, f_payload: bytes, z_payload: bytes) -> int:
    """CRC32 of a record's packed `_FIELDS` and both payloads."""
    return zlib.crc32(z_payload, zlib.crc32(f_payload, zlib.crc32(fields)))


class BitstreamWriter:
    """Writes a .dsae file segment by segment to a seekable binary file object, starting at its
    current position (byte 0 of the .dsae file).

    Call `close()` once all segments are written; it does not close `fileobj`. A file whose
    writer was never closed has frame count 0 and no index: readers reject it as incomplete.
    """

    def __init__(self, fileobj: BinaryIO, header: Header) -> None:
        self._file = fileobj
        self._header = dataclasses.replace(header, frame_count=0)
        self._start = fileobj.tell()
        self._offsets: list[int] = []
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
        fields = _FIELDS.pack(segment.frame_count, segment.f_symbols, len(segment.f_payload),
                              segment.z_symbols, len(segment.z_payload))
        crc = _record_crc(fields, segment.f_payload, segment.z_payload)
        self._offsets.append(self._file.tell() - self._start)
        self._file.write(fields + _CRC.pack(crc) + segment.f_payload + segment.z_payload)
        self._frames += segment.frame_count
        self._last_was_full = segment.frame_count == self._header.segment_length

    def close(self) -> None:
        """Write the index and trailer, then patch the header's frame count. Needs at least one segment."""
        if self._closed:
            return
        if not self._offsets:
            raise ValueError("a .dsae file needs at least one segment")
        index_offset = self._file.tell() - self._start
        index = _COUNT.pack(len(self._offsets)) + b"".join(_OFFSET.pack(o) for o in self._offsets)
        self._file.write(index + _CRC.pack(zlib.crc32(index)) + _TRAILER.pack(index_offset, MAGIC))
        end = self._file.tell()
        self._file.seek(self._start)
        self._file.write(_pack_header(dataclasses.replace(self._header, frame_count=self._frames)))
        self._file.seek(end)
        self._closed = True


class BitstreamReader:
    """Random access to the segments of a .dsae file (a seekable binary file object or bytes).

    The constructor validates header, trailer and index; `read_segment` validates one record.
    Every problem with the data raises BitstreamError. Not thread-safe (reads seek the source).
    """

    header: Header

    def __init__(self, source: BinaryIO | bytes) -> None:
        self._file = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
        self._size = self._file.seek(0, io.SEEK_END)
        self.header, header_size = self._read_header()
        self._offsets = self._read_index(header_size)

    def __len__(self) -> int:
        """Number of segments."""
        return len(self._offsets) - 1

    def read_segment(self, k: int) -> Segment:
        """Segment k, 0 <= k < len(self), with its CRC and fields checked."""
        fields, f_len, z_len, crc = self._read_record_fields(k)
        payloads = self._read(self._offsets[k] + _RECORD_SIZE, f_len + z_len)
        f_payload, z_payload = payloads[:f_len], payloads[f_len:]
        if _record_crc(fields, f_payload, z_payload) != crc:
            raise BitstreamError(f"segment {k} is corrupted (CRC mismatch)")
        frame_count, f_symbols, _, z_symbols, _ = _FIELDS.unpack(fields)
        expected = min(self.header.segment_length, self.header.frame_count - k * self.header.segment_length)
        if frame_count != expected:
            raise BitstreamError(f"segment {k} holds {frame_count} frames where the header implies {expected}")
        try:
            return Segment(frame_count, f_symbols, z_symbols, f_payload, z_payload)
        except ValueError as error:
            raise BitstreamError(f"segment {k} is invalid ({error})") from None

    def segment_sizes(self, k: int) -> tuple[int, int]:
        """(f_payload bytes, z_payload bytes) of segment k, without reading the payloads."""
        _, f_len, z_len, _ = self._read_record_fields(k)
        return f_len, z_len

    def _read(self, offset: int, size: int) -> bytes:
        """Exactly `size` bytes at `offset`, or BitstreamError if they are not all in the file."""
        if offset < 0 or offset + size > self._size:
            raise BitstreamError("file is truncated")
        self._file.seek(offset)
        data = self._file.read(size)
        if len(data) != size:
            raise BitstreamError("file is truncated")
        return data

    def _read_header(self) -> tuple[Header, int]:
        """Parse and validate the header; return it and its size in bytes."""
        if not MAGIC.startswith(self._read(0, min(self._size, len(MAGIC)))):
            raise BitstreamError("not a .dsae file (bad magic)")
        _, version, name_len = _PREFIX.unpack(self._read(0, _PREFIX.size))
        if version != FORMAT_VERSION:
            raise BitstreamError(f"unsupported format version {version} (this decoder reads version {FORMAT_VERSION})")
        size = _PREFIX.size + name_len + _GEOMETRY.size + _CRC.size
        data = self._read(0, size)
        (crc,) = _CRC.unpack(data[-_CRC.size:])
        if zlib.crc32(data[:-_CRC.size]) != crc:
            raise BitstreamError("file header is corrupted (CRC mismatch)")
        name = data[_PREFIX.size:_PREFIX.size + name_len]
        geometry = _GEOMETRY.unpack(data[_PREFIX.size + name_len:-_CRC.size])
        try:
            header = Header(name.decode("ascii"), *geometry)
        except (UnicodeDecodeError, ValueError) as error:
            raise BitstreamError(f"file header is invalid ({error})") from None
        if header.frame_count == 0:
            raise BitstreamError("file is incomplete (its writer was never closed)")
        return header, size

    def _read_index(self, header_size: int) -> list[int]:
        """Segment offsets followed by the index offset (where the last record ends), validated."""
        index_offset, magic = _TRAILER.unpack(self._read(self._size - _TRAILER.size, _TRAILER.size))
        if magic != MAGIC:
            raise BitstreamError("file is truncated or damaged (no index trailer at its end)")
        if not header_size <= index_offset <= self._size - _TRAILER.size - _COUNT.size - _CRC.size:
            raise BitstreamError("file is corrupted (index offset points outside the file)")
        (count,) = _COUNT.unpack(self._read(index_offset, _COUNT.size))
        index_size = _COUNT.size + count * _OFFSET.size + _CRC.size
        if index_offset + index_size + _TRAILER.size != self._size:
            raise BitstreamError("file is corrupted (index does not fit the file)")
        index = self._read(index_offset, index_size)
        (crc,) = _CRC.unpack(index[-_CRC.size:])
        if zlib.crc32(index[:-_CRC.size]) != crc:
            raise BitstreamError("segment index is corrupted (CRC mismatch)")
        if count != self.header.segment_count:
            expected = self.header.segment_count
            raise BitstreamError(f"segment index has {count} entries where the header implies {expected}")
        offsets = [offset for (offset,) in _OFFSET.iter_unpack(index[_COUNT.size:-_CRC.size])] + [index_offset]
        if offsets[0] != header_size:
            raise BitstreamError("segment index is invalid (first segment does not follow the header)")
        if any(end - start < _RECORD_SIZE for start, end in zip(offsets, offsets[1:])):
            raise BitstreamError("segment index is invalid (offsets out of order or outside the file)")
        return offsets

    def _read_record_fields(self, k: int) -> tuple[bytes, int, int, int]:
        """Segment k's packed fields, payload lengths and stored CRC, sizes checked against the index."""
        if not 0 <= k < len(self):
            raise IndexError(f"segment {k} out of range (file has {len(self)} segments)")
        record = self._read(self._offsets[k], _RECORD_SIZE)
        fields, (crc,) = record[:_FIELDS.size], _CRC.unpack(record[_FIELDS.size:])
        _, _, f_len, _, z_len = _FIELDS.unpack(fields)
        if _RECORD_SIZE + f_len + z_len != self._offsets[k + 1] - self._offsets[k]:
            raise BitstreamError(f"segment {k} is corrupted (its size does not match the index)")
        return fields, f_len, z_len, crc
