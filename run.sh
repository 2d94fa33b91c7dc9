#!/usr/bin/env bash
# One-command set-up and run on a fresh machine.
#   bash run.sh demo       # install what ocr-demo needs into .venv, then run it on the
#                          # built-in demo model
#   bash run.sh test       # also install the dev tools, the export corpus and the Triton
#                          # clients; lint; run the suite (in parallel); then run its
#                          # TensorFlow-free part again in .venv-runtime, an environment with
#                          # the base install only (as on a Jetson); then, without arguments,
#                          # three legs that print their time: the pages' code blocks run on
#                          # the demo (tests/test_docs.py, -m docs), every benchmark script
#                          # with --smoke (tests/test_benchmarks.py, -m benchmarks) and the
#                          # export corpus of public Keras models (-m corpus)
#   bash run.sh serve-env  # also make .venv-serve, the environment ocr-serve runs Triton in
# Arguments after `test` go to pytest, in the suite's two legs (and leave out the docs,
# benchmark and corpus legs). Set OCR_DEPLOY_VENV to use another virtual environment folder.
set -euo pipefail
cd "$(dirname "$0")"
venv="${OCR_DEPLOY_VENV:-.venv}"
runtime_venv="$venv-runtime"
python="${PYTHON:-python3}"
# pytest-xdist: 2 workers measured faster than 3 on CI's 2 cores; loadgroup keeps each
# xdist_group (one Triton server, one C ABI build) on one worker
parallel=(-n "${OCR_DEPLOY_TEST_WORKERS:-2}" --dist loadgroup)
pins="$(cat pyproject.toml constraints.txt run.sh | sha256sum | cut -c1-16)"

pip_install() {  # VENV ARGS...: quietly, pinned. -qq hides the per-package warnings of
    # this machine's pip configuration; --no-warn-conflicts the conflict report that the
    # deliberate --no-deps installs below would print (not an installation failure).
    local env="$1"
    shift
    "$env/bin/python" -m pip install -qq --no-warn-conflicts -c constraints.txt "$@"
}

install_set() {  # VENV SET: install SET once per version of the pins (a stamp per set);
    # the test set holds the demo set
    local env="$1" set="$2" stamp="$1/.ocr-deploy-$2"
    if [ "$(cat "$stamp" 2>/dev/null)" = "$pins" ]; then
        return
    fi
    echo "run.sh: installing the $set set into $env ..." >&2
    if [ ! -x "$env/bin/python" ]; then
        "$python" -m venv "$env"
        "$env/bin/python" -m pip install -qq --upgrade pip
    fi
    case "$set" in
        base) pip_install "$env" -e . ;;
        runtime)  # the TensorFlow-free leg: the base install and the test runner only
            pip_install "$env" -e . pytest pytest-xdist ;;
        demo|test)  # ocr-demo: export (TensorFlow), builds, and ocr-bench's plot
            pip_install "$env" -e ".[export,bench$([ "$set" = demo ] || echo ,dev,video)]"
            # tf-keras declares `tensorflow` (the CUDA build) as a dependency: install it
            # without dependencies, at the version of the TensorFlow just installed
            # (TOOLCHAIN trap).
            tf_version="$("$env/bin/python" -c \
                'import importlib.metadata as m; print(m.version("tensorflow-cpu"))')"
            pip_install "$env" --no-deps "tf-keras==$tf_version" ;;
    esac
    if [ "$set" = test ]; then
        # The export corpus (tests/corpus): public Keras model libraries. keras-hub declares
        # tensorflow-text (which pulls the CUDA tensorflow) and the others pin old stacks:
        # all without their declared dependencies, then what they import (efficientnet
        # imports scikit-image). The Triton clients (serving tests, benchmarks) too:
        # tritonclient's grpc extra caps protobuf below the 7.x TensorFlow 2.21 needs, and
        # it works with 7.x. Versions in constraints.txt.
        pip_install "$env" --no-deps keras-hub keras-unet-collection segmentation-models \
            keras-applications image-classifiers efficientnet tritonclient
        pip_install "$env" regex tokenizers sentencepiece scikit-image \
            python-rapidjson geventhttpclient greenlet
        echo "$pins" > "$env/.ocr-deploy-demo"
    fi
    echo "$pins" > "$stamp"
}

check_no_tensorflow() {  # VENV: the TensorFlow-free leg must really be free of it
    "$1/bin/python" - <<'EOF'
import importlib.util
import sys

found = [name for name in ("tensorflow", "keras", "tf_keras", "tf2onnx")
         if importlib.util.find_spec(name) is not None]
if found:
    sys.exit(f"run.sh: {sys.prefix}: expected an environment without TensorFlow, found "
             f"{', '.join(found)} importable; delete the folder and rerun")
EOF
}

case "${1:-}" in
    demo) shift
          install_set "$venv" demo
          exec "$venv/bin/ocr-demo" "$@" ;;
    serve-env) shift
          install_set "$venv" base
          exec "$venv/bin/ocr-serve" --setup-only "$@" ;;
    test) shift
          install_set "$venv" test
          install_set "$runtime_venv" runtime
          check_no_tensorflow "$runtime_venv"
          "$venv/bin/ruff" check .
          legs=$#  # no arguments: the docs, benchmark and corpus legs run too
          echo "run.sh: the whole suite ($venv)" >&2
          "$venv/bin/pytest" -q "${parallel[@]}" -m "not docs and not benchmarks and not corpus" "$@"
          echo "run.sh: again, the tests that need no TensorFlow, without it" \
               "($runtime_venv)" >&2
          status=0
          "$runtime_venv/bin/pytest" -q "${parallel[@]}" \
              -m "not tensorflow and not docs and not benchmarks and not corpus" "$@" || status=$?
          if [ "$status" -eq 5 ]; then  # the selection held only TensorFlow tests
              echo "run.sh: no test of this selection runs without TensorFlow" >&2
              status=0
          fi
          if [ "$status" -eq 0 ] && [ "$legs" -eq 0 ]; then
              # the docs leg's demo run is also the one test_demo_pipeline checks
              for leg in "docs test_docs test_demo_pipeline" "benchmarks test_benchmarks" \
                         "corpus test_export_corpus"; do
                  set -- $leg
                  leg=$1
                  shift
                  echo "run.sh: the $leg leg (-m $leg)" >&2
                  start=$SECONDS
                  "$venv/bin/pytest" -q "${parallel[@]}" -m "$leg" \
                      $(printf 'tests/%s.py ' "$@") || status=$?
                  echo "run.sh: the $leg leg took $((SECONDS - start)) s" >&2
              done
          fi
          exit "$status" ;;
    *) echo "usage: bash run.sh demo|test|serve-env [args...]" >&2; exit 2 ;;
esac
