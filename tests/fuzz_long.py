"""Fuzz the .dsae decoder for a long time: `python tests/fuzz_long.py --seconds 600`.

Runs the slow test `test_decoder_fuzz_long` of tests/test_reliability.py: hypothesis mutates small valid files
made with the tiny test model (bit flips, insertions, deletions, truncations, header fields at extremes, foreign
versions and models, indexes and records pointing anywhere, garbage payloads and crafted geometries, all with
valid CRCs where that gets them deeper; audio records of any bytes and sizes), decodes each and reads its audio.
Exit code 0: every file decoded to frames that fit its header or was rejected with BitstreamError /
UnknownModelError, none hung (10 s per file). A failing case
is shrunk, printed, and kept in .hypothesis/ so that the next run tries it first.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pytest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600, help="how long to fuzz (default: 600)")
    args = parser.parse_args(argv)
    os.environ["FUZZ_SECONDS"] = str(args.seconds)
    test = Path(__file__).with_name("test_reliability.py")
    return int(pytest.main([f"{test}::test_decoder_fuzz_long", "-m", "slow", "-q", "-s"]))


if __name__ == "__main__":
    sys.exit(main())
