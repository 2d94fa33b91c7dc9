#!/usr/bin/env bash
# Build libocr_deploy (the C ABI), install it, and build the examples against the install:
#   bash capi/build.sh [PREFIX]        # default PREFIX: build/ocr_deploy
# The library runs by default in the Python environment of $OCR_DEPLOY_PYTHON, else the
# project's .venv (made by `bash run.sh test`). OCR_DEPLOY_PYTHON means what it means to the
# library at run time: an environment's folder or its bin/python.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${OCR_DEPLOY_PYTHON:-$PWD/.venv}"
if [ -d "$python" ]; then
    python="$python/bin/python"
fi
prefix="${1:-build/ocr_deploy}"
if [ ! -f "$python" ] || [ ! -x "$python" ]; then
    echo "capi/build.sh: $python: expected the Python of an environment with ocr-deploy" \
         "installed, found none; run 'bash run.sh test' first, or set OCR_DEPLOY_PYTHON" >&2
    exit 2
fi
cmake -S capi -B build/capi -DPython3_EXECUTABLE="$python"
cmake --build build/capi -j
cmake --install build/capi --prefix "$prefix"
prefix="$(cd "$prefix" && pwd)"
cmake -S examples -B build/examples -DCMAKE_PREFIX_PATH="$prefix"
cmake --build build/examples -j
echo "capi/build.sh: library in $prefix (lib/, include/, lib/cmake/ocr_deploy," \
     "lib/pkgconfig/ocr_deploy.pc); examples in build/examples" >&2
