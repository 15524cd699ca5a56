"""The .dsae file format and the entropy coding of its payloads; numpy and bytes only, no torch."""
from bitstream.coder import (
    SCALE_TABLE,
    SYMBOL_BOUND,
    SymbolDecoder,
    SymbolEncoder,
    Tally,
    categorical_bits,
    gaussian_bits,
    tallied,
)
from bitstream.format import (
    FINGERPRINT_SIZE,
    FORMAT_VERSION,
    MAGIC,
    BitstreamError,
    BitstreamReader,
    BitstreamWriter,
    Header,
    Segment,
)

__all__ = [
    "BitstreamError",
    "BitstreamReader",
    "BitstreamWriter",
    "FINGERPRINT_SIZE",
    "FORMAT_VERSION",
    "Header",
    "MAGIC",
    "SCALE_TABLE",
    "SYMBOL_BOUND",
    "Segment",
    "SymbolDecoder",
    "SymbolEncoder",
    "Tally",
    "categorical_bits",
    "gaussian_bits",
    "tallied",
]
