"""Entropy coding of integer symbols with constriction's range coder.

Symbols are coded first in, first out: a `SymbolDecoder` must make the same sequence of
`gaussian` / `categorical` calls, with the same model parameters, as the `SymbolEncoder`
that wrote the payload. Gaussian symbols are mean-centred integers coded under a zero-mean
quantised Gaussian whose std is looked up in the fixed `SCALE_TABLE`, so encoder and decoder
only have to agree on integer scale indices, never on floats.

A payload is the range coder's compressed words as big-endian uint32 bytes, shortened at the end:
the coder ends its output with one whole word, where fewer bytes usually name a point in the final
interval just as well. `SymbolEncoder.to_bytes` rounds the number the payload spells up to whole
bytes as far as decoding the recorded symbols still proves correct, and drops the trailing zero
bytes; the decoder puts them back (a missing word reads as zero). That saves ~14 of the ~17 bits
the seal otherwise costs per payload.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import math
from collections.abc import Iterator

import constriction
import numpy as np

from bitstream.format import BitstreamError

SCALE_TABLE: np.ndarray = np.array([
    0.11000000000000001, 0.12440410337871263, 0.14069437215874012, 0.1591177928985361, 0.17995369415583695,
    0.20351798155585424, 0.23016792742637654, 0.26030758761831785, 0.29439392763938627, 0.33294375098286777,
    0.3765415346960821, 0.4258482909882771, 0.4816115892341247, 0.5446768903224373, 0.6160003651969836,
    0.6966633919390023, 0.787888951190402, 0.891060168498511, 1.0077412847140166, 1.1397013723869016,
    1.2889411577389158, 1.4577233548766322, 1.64860697216033, 1.8644861108681825, 2.108633844405629,
    2.3847518433390005, 2.697026498648367, 3.0501923941179885, 3.4496040902074285, 3.9013173077617713,
    4.412180742435963, 4.989939901886986, 5.643354540071924, 6.382331469143952, 7.218074762587224,
    8.163255626910708, 9.232204517427787, 10.441128410904577, 11.808356529278065, 13.354618240009122,
    15.103357346484879, 17.08108753361584, 19.317794357752575, 21.847389875732397, 24.708226805960464,
    27.943680017030772, 31.602804160185098, 35.74107741637158, 40.42124263429875, 45.71425861248478,
    51.70037594826147, 58.4703537653257, 66.12683576737696, 74.78590648101743, 84.57885128304754,
    95.65414689699084, 108.17971253796195, 122.3454558368367, 138.36615214401417, 156.48470086762356,
    176.9758082174797, 200.15015219107792, 226.3590929494899, 255.99999999999997,
])
"""float64 (64,): std of the zero-mean Gaussian for each scale index, log-uniform from 0.11 to 256:
`np.exp(np.linspace(np.log(0.11), np.log(256.0), 64))` as numpy computes it on this project's AVX-512 machine,
written out: numpy's vectorised exp is not correctly rounded (19 of these 64 differ in the last bit from the
correctly rounded exp of their argument) and picks its implementation by CPU, and the coders on both sides of a
file must use the same numbers."""
SCALE_TABLE.flags.writeable = False

SYMBOL_BOUND: int = 1023
"""Gaussian-coded symbols lie in [-SYMBOL_BOUND, SYMBOL_BOUND]; the caller clamps."""

_GAUSSIAN = constriction.stream.model.QuantizedGaussian(-SYMBOL_BOUND, SYMBOL_BOUND)
_TINY = np.finfo(np.float64).tiny  # probability floor that keeps ideal bit counts finite


def _int_array(values: np.ndarray, name: str, low: int, high: int) -> np.ndarray:
    """Check that `values` is a 1-D integer array in [low, high]; return it as int32."""
    values = np.asarray(values)
    if values.ndim != 1 or not (values.size == 0 or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D integer array, got {values.dtype} of shape {values.shape}")
    if values.size and (values.min() < low or values.max() > high):
        raise ValueError(f"{name} must lie in [{low}, {high}], got [{values.min()}, {values.max()}]")
    return values.astype(np.int32)


def _scale_index(scale_index: np.ndarray) -> np.ndarray:
    """Validate scale indices: int (n,) in [0, len(SCALE_TABLE))."""
    return _int_array(scale_index, "scale_index", 0, len(SCALE_TABLE) - 1)


def _gaussian_symbols(symbols: np.ndarray, scale_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a Gaussian batch; return (symbols int32 (n,), scale_index int32 (n,))."""
    symbols = _int_array(symbols, "symbols", -SYMBOL_BOUND, SYMBOL_BOUND)
    scale_index = _scale_index(scale_index)
    if symbols.shape != scale_index.shape:
        raise ValueError(f"{symbols.shape[0]} symbols but {scale_index.shape[0]} scale indices")
    return symbols, scale_index


def _pmf(pmf: np.ndarray) -> np.ndarray:
    """Validate a probability table: float (K,), K >= 2, finite, nonnegative, positive sum."""
    pmf = np.asarray(pmf, dtype=np.float64)
    if pmf.ndim != 1 or pmf.size < 2:
        raise ValueError(f"pmf must be a 1-D array of at least 2 entries, got shape {pmf.shape}")
    if not np.all(np.isfinite(pmf)) or pmf.min() < 0 or pmf.sum() <= 0:
        raise ValueError("pmf must be finite and nonnegative with a positive sum")
    return pmf


def _categorical_model(pmf: np.ndarray) -> constriction.stream.model.Categorical:
    """The constriction model for a validated pmf (identical on both sides)."""
    return constriction.stream.model.Categorical(pmf, perfect=False)


class SymbolEncoder:
    """Collects integer symbols into one range-coded payload."""

    def __init__(self) -> None:
        self._encoder = constriction.stream.queue.RangeEncoder()
        self._batches: list[tuple[str, np.ndarray, np.ndarray]] = []  # (kind, symbols, scale_index or pmf)

    def gaussian(self, symbols: np.ndarray, scale_index: np.ndarray) -> None:
        """Append symbols int (n,) in [-SYMBOL_BOUND, SYMBOL_BOUND], each coded under a zero-mean
        quantised Gaussian with std SCALE_TABLE[scale_index] (int (n,)). ValueError on bad input."""
        symbols, scale_index = _gaussian_symbols(symbols, scale_index)
        self._encoder.encode(symbols, _GAUSSIAN, np.zeros(len(symbols)), SCALE_TABLE[scale_index])
        self._batches.append(("gaussian", symbols, scale_index))

    def categorical(self, symbols: np.ndarray, pmf: np.ndarray) -> None:
        """Append symbols int (n,) in [0, K), all coded under one pmf float (K,) (need not sum to 1)."""
        pmf = _pmf(pmf)
        symbols = _int_array(symbols, "symbols", 0, len(pmf) - 1)
        self._encoder.encode(symbols, _categorical_model(pmf))
        self._batches.append(("categorical", symbols, pmf))

    def to_bytes(self) -> bytes:
        """The payload so far: the coder's words as big-endian bytes, rounded up to the fewest whole
        bytes that still decode to every symbol appended, trailing zero bytes dropped."""
        words = self._encoder.get_compressed().astype(">u4").tobytes()
        number = int.from_bytes(words, "big")
        # Rounding up to a multiple of 256^k bytes is a larger number for a larger k, so the k that still
        # decode form a prefix 0..k_max (k_max <= 4: the coder seals with one word): bisect for it.
        payload, decodes, fails = words.rstrip(b"\0"), 0, 5
        while fails - decodes > 1:
            dropped = (decodes + fails) // 2
            rounded = -(-number // 256 ** dropped) * 256 ** dropped
            candidate = rounded.to_bytes(len(words), "big").rstrip(b"\0") if rounded < 256 ** len(words) else None
            if candidate is not None and self._decodes(candidate):
                payload, decodes = candidate, dropped
            else:
                fails = dropped
        return payload

    def _decodes(self, payload: bytes) -> bool:
        """Whether `payload` decodes to every symbol appended so far (a trial decode: never tallied)."""
        token = _TALLIES.set(None)
        try:
            decoder = SymbolDecoder(payload)
        finally:
            _TALLIES.reset(token)
        try:
            for kind, symbols, parameter in self._batches:
                decoded = (decoder.gaussian(parameter) if kind == "gaussian"
                           else decoder.categorical(parameter, len(symbols)))
                if not np.array_equal(decoded, symbols):
                    return False
        except BitstreamError:
            return False
        return True


class SymbolDecoder:
    """Reads symbols back from a `SymbolEncoder` payload, in the order they were encoded.

    Bad arguments raise ValueError; a payload the models cannot decode raises BitstreamError.
    A corrupted payload may also decode silently to wrong symbols: integrity is the CRC's job.
    """

    def __init__(self, payload: bytes) -> None:
        padded = payload + bytes(-len(payload) % 4)  # the trailing zero bytes to_bytes dropped
        self._decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(padded, dtype=">u4").astype(np.uint32))
        tallies = _TALLIES.get()
        self._tally = None if tallies is None else Tally(payload)
        if self._tally is not None:
            tallies.append(self._tally)

    def gaussian(self, scale_index: np.ndarray) -> np.ndarray:
        """Decode one symbol per scale index int (n,); returns int32 (n,)."""
        scale_index = _scale_index(scale_index)
        symbols = self._decode(_GAUSSIAN, np.zeros(len(scale_index)), SCALE_TABLE[scale_index])
        if self._tally is not None:
            self._tally.add(symbols, gaussian_bits(symbols, scale_index),
                            gaussian_bits(symbols, scale_index, fixed_point=False))
        return symbols

    def categorical(self, pmf: np.ndarray, count: int) -> np.ndarray:
        """Decode `count` symbols under one pmf float (K,); returns int32 (count,) in [0, K)."""
        if count < 0:
            raise ValueError(f"count must be nonnegative, got {count}")
        pmf = _pmf(pmf)
        symbols = self._decode(_categorical_model(pmf), int(count))
        if self._tally is not None:
            self._tally.add(symbols, categorical_bits(symbols, pmf), categorical_bits(symbols, pmf, fixed_point=False))
        return symbols

    def _decode(self, *args: object) -> np.ndarray:
        """Run the range decoder, turning its complaints about the data into BitstreamError."""
        try:
            return np.asarray(self._decoder.decode(*args), dtype=np.int32)
        except Exception as error:  # constriction raises AssertionError on invalid data
            raise BitstreamError(f"entropy-coded payload is corrupted ({error})") from error


@dataclasses.dataclass
class Tally:
    """What one `SymbolDecoder` decoded inside `tallied()`: its payload, the number of symbols, and their
    information content (bits) under the coder's fixed-point models (`ideal_bits`, what the payload is measured
    against) and under the float models the networks predict (`float_bits`)."""

    payload: bytes
    symbols: int = 0
    ideal_bits: float = 0.0
    float_bits: float = 0.0

    def add(self, symbols: np.ndarray, ideal_bits: float, float_bits: float) -> None:
        self.symbols += len(symbols)
        self.ideal_bits += ideal_bits
        self.float_bits += float_bits


_TALLIES: contextvars.ContextVar[list[Tally] | None] = contextvars.ContextVar("tallies", default=None)


@contextlib.contextmanager
def tallied() -> Iterator[list[Tally]]:
    """Measure the coder: every `SymbolDecoder` created inside the block appends a `Tally` to the yielded list
    (in creation order) and adds up the ideal bits of what it decodes. Decoding is unchanged, only slower."""
    tallies: list[Tally] = []
    token = _TALLIES.set(tallies)
    try:
        yield tallies
    finally:
        _TALLIES.reset(token)


PRECISION: int = 24
"""Fixed-point precision (bits) of constriction's default models: every probability is an integer / 2^24."""


def _fixed_point_log2_pmf(cumulative: np.ndarray, scale: float) -> np.ndarray:
    """log2 of the probabilities constriction's leaky fixed-point quantisation assigns, float64 (..., K).

    `cumulative` float (..., K) holds each symbol's left cumulative float mass (first entry 0); `scale`
    maps float mass to the 2^PRECISION - K free integer units. Symbol i's left cumulative is
    floor(scale * cumulative[i]) + i (one guaranteed unit per symbol), the first is 0, the end 2^PRECISION.
    """
    units = 2 ** PRECISION
    left = np.floor(cumulative * scale).astype(np.int64) + np.arange(cumulative.shape[-1])
    left[..., 0] = 0
    bounds = np.concatenate([left, np.full(left.shape[:-1] + (1,), units)], axis=-1)
    return np.log2(np.diff(bounds, axis=-1)) - PRECISION


@functools.lru_cache(maxsize=2)
def _gaussian_log2_pmf(fixed_point: bool) -> np.ndarray:
    """log2 p(s | scale index), float64 (64, 2*SYMBOL_BOUND + 1), column j is symbol j - SYMBOL_BOUND.

    fixed_point: the integer model constriction's range coder uses (Gaussian CDF at s - 0.5 scaled to
    2^24 minus one unit per symbol, floored, plus one unit per symbol; the end bins take the tails).
    Otherwise the float model: the Gaussian over [s - 0.5, s + 0.5] renormalised to +-(B + 0.5),
    floored at the smallest normal float."""
    erfc = np.frompyfunc(math.erfc, 1, 1)
    inv = 1.0 / (SCALE_TABLE[:, None] * math.sqrt(2.0))  # (64, 1)
    symbols = np.arange(-SYMBOL_BOUND, SYMBOL_BOUND + 1)
    if fixed_point:
        # P(X <= s - 0.5), computed as constriction does: (1 + erf) / 2 rounds to exactly 1 in the far right tail.
        erf = np.frompyfunc(math.erf, 1, 1)
        cdf = ((1.0 + erf((symbols - 0.5) * inv)) / 2.0).astype(np.float64)
        return _fixed_point_log2_pmf(cdf, float(2 ** PRECISION - len(symbols)))
    magnitude = np.abs(symbols)
    # 0.5 * erfc(x / (std sqrt 2)) = P(X > x); the bin [|s| - 0.5, |s| + 0.5] is a difference of two tails.
    mass = 0.5 * (erfc((magnitude - 0.5) * inv) - erfc((magnitude + 0.5) * inv)).astype(np.float64)
    inside = 1.0 - erfc((SYMBOL_BOUND + 0.5) * inv).astype(np.float64)  # P(|X| <= B + 0.5)
    return np.log2(np.maximum(mass / inside, _TINY))


def gaussian_bits(symbols: np.ndarray, scale_index: np.ndarray, fixed_point: bool = True) -> float:
    """Information content Σ -log2 p (bits) of symbols int (n,) under the models of `SymbolEncoder.gaussian`.

    fixed_point=True: under the integer probabilities the range coder actually uses (what its output is
    measured against; reproduced here from constriction's leaky quantiser).
    fixed_point=False: under the float model (Gaussian mass of [s-0.5, s+0.5], renormalised to +-(B+0.5)),
    the model the network predicts; the gap between the two is the cost of the fixed-point quantisation."""
    symbols, scale_index = _gaussian_symbols(symbols, scale_index)
    return float(-_gaussian_log2_pmf(fixed_point)[scale_index, symbols + SYMBOL_BOUND].sum())


def categorical_bits(symbols: np.ndarray, pmf: np.ndarray, fixed_point: bool = True) -> float:
    """Information content Σ -log2 p (bits) of symbols int (n,) under one pmf float (K,) as
    `SymbolEncoder.categorical` codes it: fixed_point=True the range coder's integer probabilities
    (constriction's lazy categorical quantisation), False the normalised float pmf."""
    pmf = _pmf(pmf)
    symbols = _int_array(symbols, "symbols", 0, len(pmf) - 1)
    if fixed_point:
        cumulative = np.concatenate([[0.0], np.cumsum(pmf)[:-1]])
        log2_pmf = _fixed_point_log2_pmf(cumulative, (2 ** PRECISION - len(pmf)) / pmf.sum())
    else:
        log2_pmf = np.log2(np.maximum(pmf / pmf.sum(), _TINY))
    return float(-log2_pmf[symbols].sum())
