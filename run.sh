#!/usr/bin/env bash
# One-command set-up and run on a fresh machine.
#   bash run.sh demo   # install into .venv, then run the main job on the built-in demo model
#   bash run.sh test   # install into .venv, then lint and run the test suite
#   bash run.sh serve-env  # also make .venv-serve, the environment ocr-serve runs Triton in
# Set OCR_DEPLOY_VENV to use another virtual environment folder.
set -euo pipefail
cd "$(dirname "$0")"
venv="${OCR_DEPLOY_VENV:-.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
stamp="$venv/.ocr-deploy-installed"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "run.sh: installing ocr-deploy[export,dev] into $venv ..." >&2
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -c constraints.txt -e ".[export,dev]"
    # tf-keras declares `tensorflow` (the CUDA build) as a dependency: install it without
    # dependencies, at the version of the TensorFlow just installed (TOOLCHAIN trap).
    tf_version="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("tensorflow-cpu"))')"
    "$venv/bin/python" -m pip install -q --no-deps "tf-keras==$tf_version"
    # The export corpus (tests/corpus): public Keras model libraries. keras-hub declares
    # tensorflow-text (which pulls the CUDA tensorflow) and the others pin old stacks: all
    # without their declared dependencies, plus what they import.
    "$venv/bin/python" -m pip install -q -c constraints.txt --no-deps keras-hub \
        keras-unet-collection segmentation-models keras-applications image-classifiers efficientnet
    "$venv/bin/python" -m pip install -q -c constraints.txt regex tokenizers sentencepiece \
        scikit-image  # efficientnet imports it
    # Triton clients (serving tests, benchmarks): tritonclient's grpc extra caps protobuf
    # below the 7.x TensorFlow 2.21 needs, and it works with 7.x: install it without
    # dependencies, then the dependencies it uses (versions in constraints.txt).
    "$venv/bin/python" -m pip install -q -c constraints.txt --no-deps tritonclient
    "$venv/bin/python" -m pip install -q -c constraints.txt python-rapidjson geventhttpclient greenlet
    echo "$want" > "$stamp"
fi

case "${1:-}" in
    demo) shift; exec "$venv/bin/ocr-demo" "$@" ;;
    serve-env) shift; exec "$venv/bin/ocr-serve" --setup-only "$@" ;;
    test) shift
          "$venv/bin/ruff" check .
          exec "$venv/bin/pytest" -q "$@" ;;
    *) echo "usage: bash run.sh demo|test|serve-env [args...]" >&2; exit 2 ;;
esac
