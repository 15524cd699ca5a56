"""Tests of bitstream/: entropy coding round trips and rates, the .dsae container, hostile input."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitstream import (
    FORMAT_VERSION,
    MAGIC,
    SCALE_TABLE,
    SYMBOL_BOUND,
    BitstreamError,
    BitstreamReader,
    BitstreamWriter,
    Header,
    Segment,
    SymbolDecoder,
    SymbolEncoder,
    categorical_bits,
    gaussian_bits,
    tallied,
)
from bitstream.format import read_varint, write_varint

B = SYMBOL_BOUND


def gaussian_sample(rng: np.random.Generator, n: int, low: int = 0, high: int = len(SCALE_TABLE)):
    """(symbols, scale indices) int (n,), symbols drawn from the model of their scale index."""
    index = rng.integers(low, high, n)
    symbols = np.clip(np.round(rng.normal(0.0, SCALE_TABLE[index])), -B, B).astype(np.int64)
    return symbols, index


def coder_word_bits(encoder: SymbolEncoder) -> int:
    """Bits of the range coder's own output (whole 32-bit words), before to_bytes shortens it."""
    return 32 * len(encoder._encoder.get_compressed())


# ---------------------------------------------------------------- coder


def test_imports_neither_torch_nor_dsaecodec():
    code = "import sys, bitstream; assert not {'torch', 'dsaecodec'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gaussian_round_trip():
    rng = np.random.default_rng(0)
    symbols, index = gaussian_sample(rng, 5000)
    symbols[:4] = [B, -B, 0, B]  # the bounds are codable even under the narrowest scale
    index[:4] = [0, 0, 63, 63]
    encoder = SymbolEncoder()
    encoder.gaussian(symbols, index)
    decoded = SymbolDecoder(encoder.to_bytes()).gaussian(index)
    assert decoded.dtype == np.int32
    np.testing.assert_array_equal(decoded, symbols)


def test_categorical_round_trip():
    rng = np.random.default_rng(1)
    pmf = np.array([0.0, 5.0, 1.0, 0.25, 3.0])  # unnormalised, with a zero entry that stays codable
    symbols = rng.integers(0, len(pmf), 3000)
    encoder = SymbolEncoder()
    encoder.categorical(symbols, pmf)
    decoded = SymbolDecoder(encoder.to_bytes()).categorical(pmf, len(symbols))
    assert decoded.dtype == np.int32
    np.testing.assert_array_equal(decoded, symbols)


def test_mixed_round_trip_is_fifo():
    rng = np.random.default_rng(2)
    first, first_index = gaussian_sample(rng, 700)
    middle, pmf = rng.integers(0, 3, 300), np.array([0.2, 0.3, 0.5])
    last, last_index = gaussian_sample(rng, 500, 40, 64)
    encoder = SymbolEncoder()
    encoder.gaussian(first, first_index)
    encoder.categorical(middle, pmf)
    encoder.gaussian(last, last_index)
    decoder = SymbolDecoder(encoder.to_bytes())
    np.testing.assert_array_equal(decoder.gaussian(first_index), first)
    np.testing.assert_array_equal(decoder.categorical(pmf, len(middle)), middle)
    np.testing.assert_array_equal(decoder.gaussian(last_index), last)


def test_tallied_counts_the_ideal_bits_of_each_decoder_and_leaves_decoding_alone():
    rng = np.random.default_rng(3)
    symbols, index = gaussian_sample(rng, 400)
    middle, pmf = rng.integers(0, 3, 50), np.array([0.2, 0.3, 0.5])
    encoder = SymbolEncoder()
    encoder.gaussian(symbols, index)
    encoder.categorical(middle, pmf)
    with tallied() as tallies:
        payload = encoder.to_bytes()  # its trial decodes are not tallied
        assert tallies == []
        decoder = SymbolDecoder(payload)
        SymbolDecoder(payload)  # created, never read: an empty tally
        np.testing.assert_array_equal(decoder.gaussian(index), symbols)
        np.testing.assert_array_equal(decoder.categorical(pmf, len(middle)), middle)
    after = SymbolDecoder(payload)
    after.gaussian(index)
    assert [tally.payload for tally in tallies] == [payload, payload]
    tally, idle = tallies
    assert tally.symbols == 450 and idle.symbols == 0 and idle.ideal_bits == 0
    assert tally.ideal_bits == pytest.approx(gaussian_bits(symbols, index) + categorical_bits(middle, pmf))
    assert tally.float_bits == pytest.approx(gaussian_bits(symbols, index, fixed_point=False)
                                             + categorical_bits(middle, pmf, fixed_point=False))
    assert abs(8 * len(payload) - tally.ideal_bits) < 32


def test_empty_batches():
    encoder = SymbolEncoder()
    encoder.gaussian(np.zeros(0, np.int64), np.zeros(0, np.int64))
    encoder.categorical(np.zeros(0, np.int64), np.ones(2))
    assert encoder.to_bytes() == b""
    decoder = SymbolDecoder(b"")
    assert decoder.gaussian(np.zeros(0, np.int64)).shape == (0,)
    assert decoder.categorical(np.ones(2), 0).shape == (0,)


@settings(max_examples=60, deadline=None)
@given(count=st.integers(1, 400), seed=st.integers(0, 2**32 - 1))
def test_shortened_payload_decodes_and_is_never_longer_than_the_coder_words(count: int, seed: int):
    rng = np.random.default_rng(seed)
    symbols, index = gaussian_sample(rng, count)
    encoder = SymbolEncoder()
    encoder.gaussian(symbols, index)
    payload = encoder.to_bytes()
    assert 8 * len(payload) <= coder_word_bits(encoder) and not payload.endswith(b"\0")
    np.testing.assert_array_equal(SymbolDecoder(payload).gaussian(index), symbols)


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_shortening_saves_one_to_two_bytes_per_payload_on_average(kind: str):
    # The coder seals with one whole word; any point of the final interval would do, and the
    # interval is typically 2^16 words wide, so ~2 bytes of the last word are free on average.
    rng = np.random.default_rng(6)
    pmf = np.array([0.1, 0.6, 0.3])
    saved_bytes = []
    for _ in range(200):
        encoder = SymbolEncoder()
        if kind == "gaussian":
            encoder.gaussian(*gaussian_sample(rng, int(rng.integers(50, 500))))
        else:
            encoder.categorical(rng.choice(3, int(rng.integers(50, 500)), p=pmf), pmf)
        saved_bytes.append((coder_word_bits(encoder) - 8 * len(encoder.to_bytes())) // 8)
    assert 1.25 < np.mean(saved_bytes) < 2.5


def test_bytes_are_deterministic_and_pinned():
    def encode() -> bytes:
        encoder = SymbolEncoder()
        encoder.gaussian(np.array([0, 1, -1, 5, -40, 1023, -1023, 0]), np.array([0, 10, 20, 30, 40, 50, 63, 5]))
        encoder.categorical(np.array([0, 3, 2, 1]), np.array([1.0, 2.0, 3.0, 4.0]))
        return encoder.to_bytes()

    # Pinned: if this changes (e.g. a new constriction), files written before no longer decode.
    assert encode() == encode() == bytes.fromhex("efcc58cdf8d1c4b23b")


def test_every_gaussian_cdf_is_pinned():
    """Every symbol under every scale index, coded: the bytes depend on each symbol's interval in constriction's
    quantised Gaussians, which it computes in floating point from SCALE_TABLE. Pinned, so that a platform or a
    constriction whose tables differ in one unit fails here instead of writing files that others cannot decode."""
    encoder = SymbolEncoder()
    encoder.gaussian(np.tile(np.arange(-B, B + 1), len(SCALE_TABLE)), np.repeat(np.arange(len(SCALE_TABLE)), 2 * B + 1))
    digest = hashlib.sha256(encoder.to_bytes()).hexdigest()
    assert digest == "bfda4e44c43d1092b74651fbd81a6fc085e6c7077782aee5467620efccc92f24"


def test_gaussian_rate_within_a_hundredth_of_a_percent_of_the_coded_model():
    rng = np.random.default_rng(3)
    symbols, index = gaussian_sample(rng, 100_000)
    # Outliers far beyond their scale (as a miscalibrated prior produces) are where the float model and
    # the coder's fixed-point model part: the coder charges at most 24 bits for any symbol.
    symbols[::50] = np.clip(symbols[::50] * 8 + 3, -B, B)
    encoder = SymbolEncoder()
    encoder.gaussian(symbols, index)
    coded, ideal = 8 * len(encoder.to_bytes()), gaussian_bits(symbols, index)
    assert ideal > 100_000  # bits
    assert ideal <= coded <= ideal * 1.0001 + 64
    assert gaussian_bits(symbols, index, fixed_point=False) > coded  # the float model overcharges the outliers


def test_categorical_rate_within_a_hundredth_of_a_percent_of_the_coded_model():
    rng = np.random.default_rng(4)
    pmf = rng.random(300) ** 3
    pmf[::7] = 0.0  # zero-probability entries still get one fixed-point unit
    symbols = rng.choice(len(pmf), 100_000, p=pmf / pmf.sum())
    symbols[::100] = 7
    encoder = SymbolEncoder()
    encoder.categorical(symbols, pmf)
    coded, ideal = 8 * len(encoder.to_bytes()), categorical_bits(symbols, pmf)
    assert ideal <= coded <= ideal * 1.0001 + 64


@pytest.mark.parametrize(("scale_index", "symbol"), [(0, 0), (0, 1), (0, 2), (5, -2), (13, 4), (13, 5), (16, 6),
                                                     (16, 7), (40, -91), (63, 1023), (63, -1023)])
def test_fixed_point_model_matches_the_coder_symbol_by_symbol(scale_index: int, symbol: int):
    # Many copies of one symbol cost n * (-log2 p) bits plus the coder's small per-symbol loss; the pairs
    # include far-tail bins where a one-unit error in the model would show as a whole bit. Counted in the
    # coder's whole words: shortened, copies of the lowest symbol (an all-zero number) take no bytes at all.
    copies = 4000
    encoder = SymbolEncoder()
    encoder.gaussian(np.full(copies, symbol), np.full(copies, scale_index))
    per_symbol = coder_word_bits(encoder) / copies
    assert gaussian_bits(np.array([symbol]), np.array([scale_index])) == pytest.approx(per_symbol, abs=0.02)


@pytest.mark.parametrize("fixed_point", [True, False])
@pytest.mark.parametrize("scale_index", [0, 20, 63])
def test_gaussian_ideal_is_a_distribution(scale_index: int, fixed_point: bool):
    bits = [gaussian_bits(np.array([s]), np.array([scale_index]), fixed_point) for s in range(-B, B + 1)]
    assert sum(2.0 ** -np.array(bits)) == pytest.approx(1.0, abs=1e-9)


def test_gaussian_ideal_grows_with_scale():
    zeros = np.zeros(1, np.int64)
    bits = [gaussian_bits(zeros, np.array([i]), fixed_point=False) for i in range(len(SCALE_TABLE))]
    assert np.all(np.diff(bits) > 0)
    assert bits[0] < 1e-4
    # A wide quantised Gaussian costs about its differential entropy, 0.5 log2(2 pi e std^2) bits per symbol.
    rng = np.random.default_rng(5)
    symbols, index = gaussian_sample(rng, 20_000, 63, 64)
    entropy = 0.5 * np.log2(2 * np.pi * np.e * SCALE_TABLE[63] ** 2)
    for fixed_point in (True, False):
        assert gaussian_bits(symbols, index, fixed_point) / len(symbols) == pytest.approx(entropy, rel=0.01)


def test_categorical_ideal_of_uniform_pmf():
    assert categorical_bits(np.arange(8), np.full(8, 0.5), fixed_point=False) == pytest.approx(24.0)
    assert categorical_bits(np.arange(8), np.full(8, 0.5)) == pytest.approx(24.0, abs=1e-5)


@pytest.mark.parametrize(
    "method, args",
    [
        ("gaussian", (np.array([B + 1]), np.array([0]))),
        ("gaussian", (np.array([-B - 1]), np.array([0]))),
        ("gaussian", (np.array([0]), np.array([len(SCALE_TABLE)]))),
        ("gaussian", (np.array([0]), np.array([-1]))),
        ("gaussian", (np.array([0, 1]), np.array([0]))),
        ("gaussian", (np.array([0.5]), np.array([0]))),
        ("gaussian", (np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64))),
        ("categorical", (np.array([3]), np.ones(3))),
        ("categorical", (np.array([-1]), np.ones(3))),
        ("categorical", (np.array([0]), np.array([1.0, -0.5, 1.0]))),
        ("categorical", (np.array([0]), np.array([1.0, np.nan]))),
        ("categorical", (np.array([0]), np.zeros(3))),
        ("categorical", (np.array([0]), np.ones(1))),
    ],
)
def test_encoder_rejects_bad_input_and_stays_clean(method: str, args: tuple):
    encoder = SymbolEncoder()
    encoder.gaussian(np.array([1, 2]), np.array([30, 30]))
    before = encoder.to_bytes()
    with pytest.raises(ValueError):
        getattr(encoder, method)(*args)
    assert encoder.to_bytes() == before  # nothing of the rejected batch was coded


def test_decoder_rejects_bad_payload_and_arguments():
    with pytest.raises(BitstreamError):  # constriction raises AssertionError on this one
        SymbolDecoder(b"\xff" * 12).gaussian(np.zeros(5, np.int64))
    with pytest.raises(ValueError):
        SymbolDecoder(b"").gaussian(np.array([64]))
    with pytest.raises(ValueError):
        SymbolDecoder(b"").categorical(np.ones(2), -1)


@settings(max_examples=150, deadline=None)
@given(words=st.binary(max_size=64), seed=st.integers(0, 2**32 - 1))
def test_decoder_on_garbage_returns_or_raises_bitstream_error(words: bytes, seed: int):
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(SCALE_TABLE), 200)
    decoder = SymbolDecoder(words)
    try:
        symbols = decoder.gaussian(index)
        categories = decoder.categorical(np.array([0.1, 0.0, 0.9]), 200)
    except BitstreamError:
        return
    assert symbols.shape == (200,) and np.abs(symbols).max() <= B
    assert categories.shape == (200,) and categories.min() >= 0 and categories.max() < 3


# ---------------------------------------------------------------- format

HEADER = Header(
    model_name="dsae-sprites",
    weights_fingerprint=bytes(range(8)),
    width=64,
    height=48,
    frame_count=0,
    fps_num=30000,
    fps_den=1001,
    segment_length=4,
)
HEADER_VARINTS = ("width", "height", "fps_num", "fps_den", "segment_length")  # in file order
RECORD_VARINTS = ("frame_count", "quality", "f_symbols", "f_len", "z_symbols", "z_len")


def make_segments(frame_counts: list[int], seed: int = 0, payload_words: int = 3) -> list[Segment]:
    """Segments with random payloads of `payload_words` * 4 and * 8 bytes."""
    rng = np.random.default_rng(seed)
    return [
        Segment(frames, int(rng.integers(0, 4081)), int(rng.integers(0, 1000)), int(rng.integers(0, 1000)),
                rng.bytes(4 * payload_words), rng.bytes(8 * payload_words))
        for frames in frame_counts
    ]


def make_file(segments: list[Segment], header: Header = HEADER, audio: bytes | None = None) -> bytes:
    """A finished .dsae file holding `segments` and `audio`."""
    buffer = io.BytesIO()
    writer = BitstreamWriter(buffer, header)
    for segment in segments:
        writer.write_segment(segment)
    writer.close(audio=audio)
    return buffer.getvalue()


def read_all(data: bytes) -> list[Segment]:
    """Open `data` and read every segment and the audio (so every CRC is checked)."""
    reader = BitstreamReader(data)
    segments = [reader.read_segment(k) for k in range(len(reader))]
    reader.read_audio()
    return segments


def leb128(value: int) -> bytes:
    """Unsigned LEB128, written out here independently of bitstream.format (no bound)."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def raw_varint(value: int | bytes) -> bytes:
    """`value` itself if it is bytes (a crafted encoding), else the canonical varint of any value >= 0."""
    return value if isinstance(value, bytes) else leb128(value)


def _varint_at(data: bytes, position: int) -> tuple[int, int]:
    """(value, next position) of the varint at `position` of a file known to be valid."""
    return read_varint(data, position, 2**64, "field")


@dataclasses.dataclass
class Layout:
    """A valid .dsae file taken apart without checks. `build()` puts it together again with every CRC, record
    size and the index size redone from the parts, whatever their values: fields hold ints of any size (their
    varint has no bound) or bytes (written as they are: crafted encodings), so a file can be made that fails
    exactly one check of the reader."""

    prefix: bytes  # magic, version, name_len, model name, weights fingerprint
    header: dict  # the header's varints by name (HEADER_VARINTS)
    records: list[dict]  # each record's varints by name (RECORD_VARINTS)
    payloads: list[bytes]  # each record's f_payload + z_payload
    frame_count: int | bytes  # the index's varints
    count: int | bytes | None = None  # None: as many as there are sizes
    sizes: list[int | bytes] | None = None  # None: the sizes of the records
    audio: bytes = b""  # the audio record's bytes (its CRC left out); b"": no audio record
    audio_len: int | bytes | None = None  # the index's; None: len(audio)
    audio_crc: int | None = None  # None: the CRC of `audio`
    extra: bytes = b""  # bytes after audio_len in the index
    index_size: int | None = None  # the trailer's; None: the index's size

    @classmethod
    def parse(cls, data: bytes) -> Layout:
        position = 6 + data[5] + 8
        prefix, header = data[:position], {}
        for name in HEADER_VARINTS:
            header[name], position = _varint_at(data, position)
        position += 4
        index_size = int.from_bytes(data[-8:-4], "little")
        body = data[len(data) - 8 - index_size:-12]
        frame_count, at = _varint_at(body, 0)
        count, at = _varint_at(body, at)
        records, payloads = [], []
        for _ in range(count):
            size, at = _varint_at(body, at)
            fields, payload_start = {}, position
            for name in RECORD_VARINTS:
                fields[name], payload_start = _varint_at(data, payload_start)
            records.append(fields)
            payloads.append(data[payload_start + 4:position + size])
            position += size
        audio_len, at = _varint_at(body, at)
        return cls(prefix, header, records, payloads, frame_count, audio=data[position:position + audio_len])

    def header_bytes(self) -> bytes:
        varints = b"".join(raw_varint(self.header[n]) for n in HEADER_VARINTS)
        body = self.prefix + varints
        return body + struct.pack("<I", zlib.crc32(body))

    def fields_bytes(self, k: int) -> bytes:
        return b"".join(raw_varint(self.records[k][n]) for n in RECORD_VARINTS)

    def record_bytes(self, k: int) -> bytes:
        fields = self.fields_bytes(k)
        return fields + struct.pack("<I", zlib.crc32(self.payloads[k], zlib.crc32(fields))) + self.payloads[k]

    def payload_offset(self, k: int) -> int:
        """Where segment k's f_payload starts in `build()`."""
        return (len(self.header_bytes()) + sum(len(self.record_bytes(j)) for j in range(k))
                + len(self.fields_bytes(k)) + 4)

    def audio_bytes(self) -> bytes:
        """The audio record: the audio and its CRC, or nothing."""
        crc = zlib.crc32(self.audio) if self.audio_crc is None else self.audio_crc
        return self.audio + struct.pack("<I", crc) if self.audio else b""

    def build(self) -> bytes:
        records = [self.record_bytes(k) for k in range(len(self.records))]
        sizes = [len(r) for r in records] if self.sizes is None else self.sizes
        body = (raw_varint(self.frame_count) + raw_varint(len(sizes) if self.count is None else self.count)
                + b"".join(raw_varint(s) for s in sizes)
                + raw_varint(len(self.audio) if self.audio_len is None else self.audio_len) + self.extra)
        index = body + struct.pack("<I", zlib.crc32(body))
        index_size = len(index) if self.index_size is None else self.index_size
        return (self.header_bytes() + b"".join(records) + self.audio_bytes() + index + struct.pack("<I", index_size)
                + MAGIC)


def rewrite_header(data: bytes, **fields) -> bytes:
    """`data` with some header varints replaced, bypassing all checks, and the header CRC redone."""
    layout = Layout.parse(data)
    assert set(fields) <= set(HEADER_VARINTS), f"the header has no field {set(fields) - set(HEADER_VARINTS)}"
    layout.header.update(fields)
    return layout.build()


def rewrite_record(data: bytes, k: int, **fields) -> bytes:
    """`data` with some varints of segment k's record replaced, bypassing all checks, its CRC and its size in the
    index redone (the payload bytes stay as they are)."""
    layout = Layout.parse(data)
    assert set(fields) <= set(RECORD_VARINTS), f"a record has no field {set(fields) - set(RECORD_VARINTS)}"
    layout.records[k].update(fields)
    return layout.build()


def rewrite_index(data: bytes, **fields) -> bytes:
    """`data` with some of the index's parts (frame_count, count, sizes, audio_len, extra), the audio record's
    parts (audio, audio_crc) and/or the trailer's index_size replaced, bypassing all checks, the index CRC redone."""
    layout = Layout.parse(data)
    for name, value in fields.items():
        setattr(layout, name, value)
    return layout.build()


SMALL_FILE = make_file(make_segments([4, 1], payload_words=1))
SMALL = Layout.parse(SMALL_FILE)
HEADER_SIZE = len(SMALL.header_bytes())  # 38 bytes
SIZES = [len(SMALL.record_bytes(k)) for k in range(2)]  # each 8 to 11 B of fields, the CRC and 4 + 8 B of payload
AUDIO = bytes(range(256)) * 2 + b"sound"  # opaque here: 517 bytes, a 2-byte audio_len
AUDIO_FILE = make_file(make_segments([4, 1], payload_words=1), audio=AUDIO)


def test_layout_helper_takes_a_file_apart_and_puts_it_together():
    assert SMALL.build() == SMALL_FILE and HEADER_SIZE == 38
    assert rewrite_header(SMALL_FILE) == rewrite_record(SMALL_FILE, 1) == rewrite_index(SMALL_FILE) == SMALL_FILE
    assert Layout.parse(AUDIO_FILE).build() == AUDIO_FILE and Layout.parse(AUDIO_FILE).audio == AUDIO
    assert rewrite_record(AUDIO_FILE, 0) == rewrite_index(AUDIO_FILE) == AUDIO_FILE


def test_round_trip_with_random_access(tmp_path):
    segments = make_segments([4, 4, 4, 2])
    path = tmp_path / "clip.dsae"
    with open(path, "wb") as file:
        writer = BitstreamWriter(file, HEADER)
        for segment in segments:
            writer.write_segment(segment)
        writer.close()
    with open(path, "rb") as file:
        reader = BitstreamReader(file)
        assert reader.header == dataclasses.replace(HEADER, frame_count=14)
        assert reader.header.segment_count == len(reader) == 4
        for k in (3, 0, 2, 1):
            assert reader.read_segment(k) == segments[k]
            assert reader.segment_sizes(k) == (len(segments[k].f_payload), len(segments[k].z_payload))
        with pytest.raises(IndexError):
            reader.read_segment(4)
        with pytest.raises(IndexError):
            reader.read_segment(-1)
    assert read_all(path.read_bytes()) == segments


def test_round_trip_of_full_segments_and_empty_payloads_and_largest_fields():
    segments = [Segment(4, 0, 0, 0, b"", b""), Segment(4, 4080, 7, 2**31, b"abcd", b"")]
    assert read_all(make_file(segments)) == segments
    largest = dataclasses.replace(HEADER, model_name="m" * 64, width=16384, height=16384, fps_num=2**31 - 1,
                                  fps_den=2**31 - 1, segment_length=1024)
    segments = [Segment(1024, 4080, 2**31, 2**31, b"f" * 300, b"z" * 200), Segment(1, 0, 0, 0, b"", b"")]
    reader = BitstreamReader(make_file(segments, largest))
    assert reader.header == dataclasses.replace(largest, frame_count=1025)
    assert [reader.read_segment(k) for k in range(2)] == segments


def test_layout_matches_the_documented_table():
    segments = make_segments([4, 1], payload_words=1)
    name = HEADER.model_name.encode()
    header = (MAGIC + bytes([7, len(name)]) + name + bytes(range(8))
              + bytes([64, 48, 0xB0, 0xEA, 0x01, 0xE9, 0x07, 4]))  # 64, 48, 30000, 1001 (LEB128), 4
    header += struct.pack("<I", zlib.crc32(header))
    records = []
    for segment in segments:
        fields = b"".join(leb128(v) for v in (segment.frame_count, segment.quality, segment.f_symbols,
                                              len(segment.f_payload), segment.z_symbols, len(segment.z_payload)))
        payloads = segment.f_payload + segment.z_payload
        records.append(fields + struct.pack("<I", zlib.crc32(payloads, zlib.crc32(fields))) + payloads)
    index = leb128(5) + leb128(2) + b"".join(leb128(len(r)) for r in records)
    with_audio = index + leb128(len(AUDIO))
    index += leb128(0)  # no audio record
    index += struct.pack("<I", zlib.crc32(index))
    assert FORMAT_VERSION == 7 and len(header) == HEADER_SIZE
    assert SMALL_FILE == header + b"".join(records) + index + struct.pack("<I", len(index)) + b"DSAE"
    audio = AUDIO + struct.pack("<I", zlib.crc32(AUDIO))
    with_audio += struct.pack("<I", zlib.crc32(with_audio))
    assert AUDIO_FILE == (header + b"".join(records) + audio + with_audio + struct.pack("<I", len(with_audio))
                          + b"DSAE")


def test_a_one_segment_sprite_file_takes_66_bytes_besides_its_payloads():
    # One 8-frame segment of 64x64 at 25 fps at quality 2 (32 steps), a 16-character model name, 20 + 10 payload
    # bytes: header 6 + 16 + 8 + 5 one-byte varints + CRC = 39 B, record 6 one-byte varints + CRC + 30 = 40 B, index
    # 4 one-byte varints + CRC = 8 B, trailer 8 B. Version 2 took 81 + (22 + 30) + 16 + 12 = 161 B for the same file,
    # version 4 one byte less (no audio_len).
    header = Header("dsae-sprites-f64", bytes(8), 64, 64, 0, 25, 1, 8)
    data = make_file([Segment(8, 32, 64, 100, bytes(20), bytes(10))], header)
    assert len(data) == 39 + 40 + 8 + 8 == 95
    # values of 128 or more take a second byte each: 16 x 8 = 128 z symbols, or quality 2.5 and up (40 steps) do not
    assert len(make_file([Segment(8, 32, 64, 128, bytes(20), bytes(10))], header)) == 96
    assert len(make_file([Segment(8, 4 * 16, 64, 100, bytes(20), bytes(10))], header)) == 95
    # sound costs its bytes, its CRC and the bytes of its size beyond the one of "no sound"
    assert len(make_file([Segment(8, 32, 64, 100, bytes(20), bytes(10))], header, audio=bytes(100))) == 95 + 100 + 4
    assert len(make_file([Segment(8, 32, 64, 100, bytes(20), bytes(10))], header, audio=bytes(200))) == 95 + 200 + 5


class AppendOnly(io.RawIOBase):
    """A stream that can only be written to, in order (like a pipe): seek and tell raise."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def seek(self, *args):
        raise io.UnsupportedOperation("seek")

    def tell(self):
        raise io.UnsupportedOperation("tell")


def test_writer_never_seeks():
    out = AppendOnly()
    segments = make_segments([4, 4, 3])
    writer = BitstreamWriter(out, HEADER)
    for segment in segments:
        writer.write_segment(segment)
    writer.close()
    assert not out.seekable()
    assert b"".join(out.chunks) == make_file(segments)
    assert read_all(b"".join(out.chunks)) == segments


def test_writer_ignores_the_frame_count_it_is_given():
    segments = make_segments([4, 1])
    assert make_file(segments, dataclasses.replace(HEADER, frame_count=99)) == make_file(segments)


@pytest.mark.parametrize(
    "field, value",
    [("model_name", ""), ("model_name", "x" * 65), ("model_name", "naïve"), ("model_name", "a\nb"),
     ("weights_fingerprint", b"\x00" * 7), ("weights_fingerprint", b"\x00" * 32), ("width", 0), ("height", 16385),
     ("frame_count", 2**24 + 1), ("fps_num", 0), ("fps_den", 2**31), ("segment_length", 0), ("segment_length", 1025)],
)
def test_header_rejects_out_of_range_fields(field: str, value):
    with pytest.raises(ValueError):
        dataclasses.replace(HEADER, **{field: value})


def test_writer_misuse():
    writer = BitstreamWriter(io.BytesIO(), HEADER)
    with pytest.raises(ValueError):
        writer.close()  # no segments
    with pytest.raises(ValueError):
        writer.write_segment(make_segments([5])[0])  # longer than segment_length
    writer.write_segment(make_segments([2])[0])
    with pytest.raises(ValueError):
        writer.write_segment(make_segments([4])[0])  # only the last segment may be short
    writer.close()
    with pytest.raises(ValueError):
        writer.write_segment(make_segments([1])[0])
    with pytest.raises(ValueError):
        Segment(0, 0, 0, 0, b"", b"")
    with pytest.raises(ValueError):
        Segment(1, 0, 2**31 + 1, 0, b"", b"")
    with pytest.raises(ValueError):
        Segment(1, 4081, 0, 0, b"", b"")


def test_unclosed_file_is_reported_as_incomplete():
    buffer = io.BytesIO()
    writer = BitstreamWriter(buffer, HEADER)
    writer.write_segment(make_segments([4])[0])
    for data in (buffer.getvalue(), buffer.getvalue()[:HEADER_SIZE]):  # with a segment, or only the header
        with pytest.raises(BitstreamError, match=r"file is incomplete \(no index at its end.*never closed"):
            BitstreamReader(data)


def test_every_single_byte_change_is_detected():
    for offset in range(len(SMALL_FILE)):
        for mask in (0x01, 0x80, 0xFF):
            corrupted = bytearray(SMALL_FILE)
            corrupted[offset] ^= mask
            with pytest.raises(BitstreamError):
                read_all(bytes(corrupted))


def test_every_truncation_is_detected():
    for length in range(len(SMALL_FILE)):
        with pytest.raises(BitstreamError):
            read_all(SMALL_FILE[:length])
    with pytest.raises(BitstreamError):
        read_all(SMALL_FILE + b"\x00")


def test_foreign_older_and_newer_files():
    with pytest.raises(BitstreamError, match="bad magic"):
        BitstreamReader(b"\x1aE\xdf\xa3" + SMALL_FILE[4:])  # Matroska's magic
    with pytest.raises(BitstreamError, match="bad magic"):
        BitstreamReader(b"X")
    for version in (1, 2, 3, 4, 5, 6, 8, 255):  # version 2 to 6 files are not read either
        with pytest.raises(BitstreamError, match=rf"^unsupported format version {version} \(this decoder reads "
                                                 r"version 7\)$"):
            BitstreamReader(SMALL_FILE[:4] + bytes([version]) + SMALL_FILE[5:])


def test_a_version_2_file_gets_the_version_error():
    # the first 40 bytes of a version 2 file (header of 81 B: 32-byte sha256, u32 geometry, u16, CRC)
    v2 = MAGIC + bytes([2, 12]) + b"dsae-sprites" + bytes(range(32)) + struct.pack("<IIIIIHB", 64, 48, 5, 30000,
                                                                                     1001, 4, 3)
    v2 += struct.pack("<I", zlib.crc32(v2))
    with pytest.raises(BitstreamError, match=r"unsupported format version 2 \(this decoder reads version 7\)"):
        BitstreamReader(v2 + SMALL_FILE[HEADER_SIZE:])


@pytest.mark.parametrize(
    "fields",
    [{"width": 0}, {"width": 16385}, {"width": 2**31}, {"height": 2**32 - 1}, {"fps_num": 0}, {"fps_num": 2**31},
     {"fps_den": 0}, {"segment_length": 0}, {"segment_length": 1025}, {"segment_length": 2000},
     {"segment_length": 1}, {"segment_length": 5}],
)
def test_out_of_range_or_inconsistent_header_fields(fields: dict):
    with pytest.raises(BitstreamError):
        read_all(rewrite_header(SMALL_FILE, **fields))


@pytest.mark.parametrize(
    "fields, message",
    [({"width": b"\xc0\x00"}, r"width is not in its shortest encoding"),  # 64 in two bytes
     ({"height": b"\xb0\x80\x00"}, r"height is not in its shortest encoding"),  # 48 in three bytes
     ({"fps_den": b"\x80\x00"}, r"fps denominator is not in its shortest encoding"),  # 0 in two bytes
     ({"width": 16385}, r"width is over its bound of 16384"),
     ({"fps_num": 2**31}, r"fps numerator is over its bound of 2147483647"),
     ({"fps_num": 2**40}, r"fps numerator takes more than the 5 bytes its bound of 2147483647 needs"),
     ({"segment_length": 1025}, r"segment length is over its bound of 1024"),
     ({"segment_length": b"\x80\x80\x80\x01"}, r"segment length takes more than the 2 bytes its bound of 1024 needs")],
)
def test_malformed_header_varints(fields: dict, message: str):
    with pytest.raises(BitstreamError, match=rf"^file header is invalid \({message}"):
        BitstreamReader(rewrite_header(SMALL_FILE, **fields))


def test_header_cut_inside_a_varint_is_truncated():
    fps_num = 6 + len(HEADER.model_name) + 8 + 2  # 30000: three bytes
    for length in (fps_num + 1, fps_num + 2):
        with pytest.raises(BitstreamError, match="^file is truncated$"):
            BitstreamReader(SMALL_FILE[:length])


def test_non_ascii_model_name_with_valid_crc():
    layout = Layout.parse(SMALL_FILE)
    layout.prefix = layout.prefix.replace(b"dsae-sprites", b"dsae-spr\xffes")
    with pytest.raises(BitstreamError, match="header is invalid"):
        BitstreamReader(layout.build())


def test_name_length_out_of_range_with_valid_crc():
    for name_len in (0, 65):
        layout = Layout.parse(SMALL_FILE)
        layout.prefix = layout.prefix[:5] + bytes([name_len]) + layout.prefix[6:]
        with pytest.raises(BitstreamError, match=f"model name length {name_len} is out of range 1..64"):
            BitstreamReader(layout.build())


def test_the_index_frame_count_is_the_header_frame_count():
    assert BitstreamReader(SMALL_FILE).header.frame_count == 5
    for frames in (2, 4):  # a last segment of more frames, consistently in its record and the index
        data = rewrite_index(rewrite_record(SMALL_FILE, 1, frame_count=frames), frame_count=4 + frames)
        assert BitstreamReader(data).header.frame_count == 4 + frames and read_all(data)[1].frame_count == frames
    with pytest.raises(BitstreamError, match="^segment 1 holds 1 frames where the index implies 2$"):
        read_all(rewrite_index(SMALL_FILE, frame_count=6))


S0, S1 = SIZES


@pytest.mark.parametrize(
    "change",
    [{"index_size": 2**32 - 1}, {"index_size": 0}, {"index_size": 6}, {"index_size": len(SMALL_FILE) - 8},
     {"index_size": len(SMALL_FILE) - 8 - HEADER_SIZE}, {"index_size": 10}, {"index_size": 12},
     {"sizes": [S0, 10**9]}, {"sizes": [S0, S0]}, {"sizes": [S0 + S1]}, {"sizes": [S0 - 1, S1 + 1]},
     {"sizes": [S0 + 1, S1 - 1]}, {"sizes": [S1, S0]}, {"sizes": [0, S0 + S1]}, {"sizes": [8, S0 + S1 - 8]},
     {"sizes": [S0]}, {"sizes": [S0, S1, 0]}, {"sizes": [S0, S1], "count": 3}, {"sizes": [S0, S1], "count": 1},
     {"frame_count": 0}, {"frame_count": 4}, {"frame_count": 8}, {"frame_count": 9}, {"frame_count": 2**24},
     {"frame_count": 2**24 + 1}, {"frame_count": 2**40}, {"extra": b"\x00"}],
)
def test_index_pointing_anywhere_wrong(change: dict):
    with pytest.raises(BitstreamError):
        read_all(rewrite_index(SMALL_FILE, **change))


@pytest.mark.parametrize(
    "change, message",
    [({"frame_count": b"\x85\x00"}, r"frame count is not in its shortest encoding"),
     ({"count": b"\x82\x80\x00"}, r"segment count is not in its shortest encoding"),
     ({"sizes": [S0, bytes([S1 | 0x80, 0x00])]},
      rf"size of segment 1 takes more than the 1 byte its bound of {S0 + S1} needs"),
     ({"count": b"\x82\x00"}, r"segment count is not in its shortest encoding"),
     ({"frame_count": 2**24 + 1}, r"frame count is over its bound of 16777216"),
     ({"count": 2**25}, r"segment count is over its bound of 16777216"),
     ({"sizes": [S0, len(SMALL_FILE)]}, r"size of segment 1 is over its bound"),
     ({"frame_count": 200, "count": 50, "sizes": [S0], "audio_len": b""},  # the index ends before it
      r"size of segment 1 is cut off"),
     ({"audio_len": b""}, r"audio size is cut off"),
     ({"audio_len": b"\x80\x00"}, r"audio size is not in its shortest encoding"),
     ({"audio_len": 2**31 + 1}, r"audio size is over its bound of 2147483648"),
     ({"audio_len": b"\x80\x80\x80\x80\x80\x00"}, r"audio size takes more than the 5 bytes its bound"),
     ({"frame_count": 0}, r"frame count is 0"),
     ({"frame_count": 9}, r"2 entries where its 9 frames in segments of 4 imply 3"),
     ({"extra": b"\x07"}, r"1 byte after its last entry")],
)
def test_malformed_index_varints(change: dict, message: str):
    with pytest.raises(BitstreamError, match=rf"^segment index is invalid \({message}"):
        BitstreamReader(rewrite_index(SMALL_FILE, **change))


def test_index_in_the_wrong_place():
    with pytest.raises(BitstreamError, match=r"the index size in its trailer, 4294967295 bytes, does not fit the file"):
        BitstreamReader(rewrite_index(SMALL_FILE, index_size=2**32 - 1))
    with pytest.raises(BitstreamError, match=r"index is corrupted \(CRC mismatch\)"):
        BitstreamReader(rewrite_index(SMALL_FILE, index_size=len(SMALL_FILE) - 8 - HEADER_SIZE - S0))
    with pytest.raises(BitstreamError, match=r"do not exactly fill the space between header and index"):
        BitstreamReader(rewrite_index(SMALL_FILE, sizes=[S0, S1 - 1]))
    with pytest.raises(BitstreamError, match=r"segment 0 is smaller than any record"):
        BitstreamReader(rewrite_index(SMALL_FILE, sizes=[8, S0 + S1 - 8]))


def test_record_fields_out_of_range_with_valid_crc():
    data = make_file([Segment(4, 0, 1, 1, b"", b"")])
    for fields, message in [({"quality": 4081}, "quality is over its bound of 4080"),
                            ({"f_symbols": 2**32 - 1}, "f symbol count is over its bound of 2147483648"),
                            ({"z_symbols": 2**31 + 1}, "z symbol count is over its bound of 2147483648"),
                            ({"frame_count": 1025}, "frame count is over its bound of 1024"),
                            ({"f_len": 2**32}, "f payload size is over its bound of 4294967295"),
                            ({"z_len": b"\x80\x80\x80\x80\x80\x00"}, "z payload size takes more than the 5 bytes "
                                                                        "its bound of 4294967295 needs"),
                            ({"f_len": b"\x80\x00"}, "f payload size is not in its shortest encoding"),
                            ({"frame_count": b"\x84\x00"}, "frame count is not in its shortest encoding")]:
        reader = BitstreamReader(rewrite_record(data, 0, **fields))
        with pytest.raises(BitstreamError, match=rf"^segment 0 is invalid \({message}\)$"):
            reader.read_segment(0)
        with pytest.raises(BitstreamError, match=rf"^segment 0 is invalid \({message}\)$"):
            reader.segment_sizes(0)


def test_record_varint_cut_off_by_the_end_of_its_record():
    data = make_file([Segment(4, 0, 1, 1, b"", b"")])  # a 10-byte record: 6 one-byte varints and the CRC
    reader = BitstreamReader(rewrite_record(data, 0, z_len=b"\x80"))  # z_len runs on into the CRC
    with pytest.raises(BitstreamError, match=r"^segment 0 is corrupted \(z payload size is cut off by the end of "
                                             r"its record\)$"):
        reader.read_segment(0)


@pytest.mark.parametrize("fields", [{"frame_count": 3}, {"frame_count": 0}, {"f_len": 5}, {"f_len": 3},
                                    {"z_len": 0}, {"z_len": 9}])
def test_record_fields_inconsistent_with_valid_crc(fields: dict):
    with pytest.raises(BitstreamError, match="segment 0"):
        read_all(rewrite_record(SMALL_FILE, 0, **fields))


@pytest.mark.parametrize(
    "value, encoded",
    [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"), (16383, b"\xff\x7f"),
     (16384, b"\x80\x80\x01"), (2**31, b"\x80\x80\x80\x80\x08"), (2**32 - 1, b"\xff\xff\xff\xff\x0f")],
)
def test_varint_encoding(value: int, encoded: bytes):
    assert write_varint(value, 2**32 - 1) == encoded == leb128(value)
    assert read_varint(b"\xff" + encoded + b"\xff", 1, 2**32 - 1, "x") == (value, 1 + len(encoded))
    assert read_varint(encoded, 0, value, "x") == (value, len(encoded))  # a value equal to its bound is fine


@pytest.mark.parametrize(
    "data, bound, error",
    [(b"\x80\x00", 2**32, "is not in its shortest encoding"), (b"\xff\x00", 2**32, "is not in its shortest encoding"),
     (b"\x81\x80\x00", 2**32, "is not in its shortest encoding"), (b"\xff\x01", 128, "is over its bound of 128"),
     (b"\x80\x80\x80\x80\x10", 2**32 - 1, "is over its bound"), (b"\x81\x08", 1024, "is over its bound"),
     (b"\x80\x01", 127, "takes more than the 1 byte its bound of 127 needs"),
     (b"\x81\x80\x80\x80\x80\x00", 2**32 - 1, "takes more than the 5 bytes its bound of 4294967295 needs"),
     (b"", 10, "is cut off"), (b"\x80", 2**32, "is cut off"), (b"\xff\xff", 2**32, "is cut off")],
)
def test_varint_rejects_overlong_over_bound_and_cut_off(data: bytes, bound: int, error: str):
    with pytest.raises(ValueError, match=f"^x {error}"):
        read_varint(data, 0, bound, "x")


def test_varint_writer_checks_its_bound():
    for value in (-1, 11):
        with pytest.raises(ValueError):
            write_varint(value, 10)


def test_every_value_has_exactly_one_encoding():
    seen = {}
    for first in range(256):
        for second in range(256):
            data = bytes([first, second])
            try:
                value, end = read_varint(data, 0, 2**14 - 1, "x")
            except ValueError:
                continue
            assert data[:end] == write_varint(value, 2**14 - 1)
            seen.setdefault(value, set()).add(data[:end])
    assert sorted(seen) == list(range(2**14)) and all(len(e) == 1 for e in seen.values())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=8), st.integers(0, 2**40))
def test_any_accepted_varint_is_the_canonical_one(data: bytes, bound: int):
    try:
        value, end = read_varint(data, 0, bound, "x")
    except ValueError:
        return
    assert value <= bound and data[:end] == write_varint(value, bound)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([b"", MAGIC, MAGIC + bytes([FORMAT_VERSION]),
                                                 SMALL_FILE[:HEADER_SIZE]]))
def test_garbage_raises_bitstream_error(garbage: bytes, prefix: bytes):
    with pytest.raises(BitstreamError):
        read_all(prefix + garbage)


# ---------------------------------------------------------------- audio record


def test_round_trip_with_and_without_audio():
    segments = make_segments([4, 4, 1])
    for audio in (None, b"x", AUDIO, bytes(70_000)):
        reader = BitstreamReader(make_file(segments, audio=audio))
        assert reader.audio_size == (len(audio) if audio else 0)
        assert reader.read_audio() == audio
        assert [reader.read_segment(k) for k in (2, 0, 1)] == [segments[2], segments[0], segments[1]]
    out = AppendOnly()  # the audio is written at close(), in order: still no seek
    writer = BitstreamWriter(out, HEADER)
    for segment in segments:
        writer.write_segment(segment)
    writer.close(audio=AUDIO)
    assert b"".join(out.chunks) == make_file(segments, audio=AUDIO)


def test_writer_checks_the_audio_size():
    writer = BitstreamWriter(io.BytesIO(), HEADER)
    writer.write_segment(make_segments([4])[0])
    with pytest.raises(ValueError, match="audio size 0 is out of range"):
        writer.close(audio=b"")


def test_a_corrupted_audio_record_leaves_the_segments_readable():
    layout = Layout.parse(AUDIO_FILE)
    for data in (flip(AUDIO_FILE, Layout.parse(AUDIO_FILE).payload_offset(1) + 12 + 100),  # in the audio
                 rewrite_index(AUDIO_FILE, audio_crc=zlib.crc32(AUDIO) ^ 1)):
        reader = BitstreamReader(data)
        assert [reader.read_segment(k) for k in range(2)] == [layout_segment(layout, k) for k in range(2)]
        with pytest.raises(BitstreamError, match=r"^audio record is corrupted \(CRC mismatch\)$"):
            reader.read_audio()


def flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1:]


def layout_segment(layout: Layout, k: int) -> Segment:
    fields, payload = layout.records[k], layout.payloads[k]
    return Segment(fields["frame_count"], fields["quality"], fields["f_symbols"], fields["z_symbols"],
                   payload[:fields["f_len"]], payload[fields["f_len"]:])


A = len(AUDIO)


@pytest.mark.parametrize(
    "change, message",
    [({"audio_len": A + 1}, "segments and audio record do not exactly fill"),
     ({"audio_len": A - 1}, "segments and audio record do not exactly fill"),
     ({"audio_len": 0}, "segments do not exactly fill"),  # the record is there, the index does not count it
     ({"audio_len": A + 4}, "segments and audio record do not exactly fill"),
     ({"audio_len": A, "sizes": [S0, S1 + 4]}, "segments and audio record do not exactly fill"),
     ({"audio_len": A - 4, "sizes": [S0, S1 + 4]}, "segment 1 is corrupted"),  # fills exactly: found by its record
     ({"audio_len": 2**31}, "does not fit the file|do not exactly fill")],
)
def test_audio_size_that_does_not_fit(change: dict, message: str):
    with pytest.raises(BitstreamError, match=message):
        read_all(rewrite_index(AUDIO_FILE, **change))


def test_audio_size_without_an_audio_record():
    with pytest.raises(BitstreamError, match="segments and audio record do not exactly fill"):
        BitstreamReader(rewrite_index(SMALL_FILE, audio_len=5))
    # a file whose last 9 bytes of segment pass for a 5-byte audio record: the segment no longer fills its record
    with pytest.raises(BitstreamError):
        read_all(rewrite_index(SMALL_FILE, audio_len=5, sizes=[S0, S1 - 9]))


def test_every_single_byte_change_and_truncation_of_a_file_with_audio_is_detected():
    for offset in range(len(AUDIO_FILE)):
        with pytest.raises(BitstreamError):
            read_all(flip(AUDIO_FILE, offset))
    for length in range(len(AUDIO_FILE)):
        with pytest.raises(BitstreamError):
            read_all(AUDIO_FILE[:length])
    with pytest.raises(BitstreamError):
        read_all(AUDIO_FILE + b"\x00")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzzed_files_with_audio_raise_only_bitstream_error(data):
    """Bit flips, insertions, deletions and crafted index fields (CRC redone) of a file with sound: every read
    returns what was written or raises BitstreamError."""
    original = bytearray(AUDIO_FILE)
    kind = data.draw(st.sampled_from(["flip", "insert", "delete", "index", "audio"]))
    if kind == "flip":
        for position in data.draw(st.lists(st.integers(0, 8 * len(original) - 1), min_size=1, max_size=8)):
            original[position // 8] ^= 1 << position % 8
    elif kind == "insert":
        position = data.draw(st.integers(0, len(original)))
        original[position:position] = data.draw(st.binary(min_size=1, max_size=16))
    elif kind == "delete":
        position = data.draw(st.integers(0, len(original) - 1))
        del original[position:position + data.draw(st.integers(1, 16))]
    elif kind == "index":
        values = st.integers(0, 2**32) | st.binary(min_size=1, max_size=6) | st.integers(A - 20, A + 20)
        fields = data.draw(st.fixed_dictionaries({}, optional={
            "audio_len": values, "sizes": st.lists(values, max_size=3), "count": values,
            "index_size": st.integers(0, len(original))}))
        original = bytearray(rewrite_index(AUDIO_FILE, **fields))
    else:  # the audio replaced by any bytes, its CRC and size redone: opaque here, so it must read back
        audio = data.draw(st.binary(min_size=1, max_size=600))
        assert BitstreamReader(rewrite_index(AUDIO_FILE, audio=audio)).read_audio() == audio
        return
    try:
        segments = read_all(bytes(original))
    except BitstreamError:
        return
    assert bytes(original) == AUDIO_FILE or len(segments) == 2
