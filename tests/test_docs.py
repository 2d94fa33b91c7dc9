"""Docs that execute: every shell and Python block of the pages (tests/doc_blocks.py says which
and how they are directed) is checked for syntax and for flags its commands' --help lists,
and run on the demo model in one working folder where `ocr-demo` has run (marked `docs`:
`bash run.sh test` runs them in a leg of their own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from doc_blocks import ROOT, Block, collect, parse, syntax_error, unknown_flags

BLOCKS = collect()
RUN_TIMEOUT = 300  # seconds per block
# what a clone holds beside the demo's outputs, for blocks that use the sources
SOURCES = ("capi", "examples", "include", "benchmarks", "ocr_deploy", "tests", "tools",
           "run.sh", "pyproject.toml")
# the user's inputs the pages name, bound to the demo's: name -> (demo file, how)
INPUTS = {"model.h5": "ocr_deploy/demo/weights/demo_ocrnet.h5",
          "model.onnx": "export/demo_ocrnet.onnx", "export/model.onnx": "export/demo_ocrnet.onnx",
          "calib": "demo_output/data/calib", "val": "demo_output/data/val",
          "photo.png": "demo_output/data/val/sample_000.png"}
# inputs a page makes itself (its first block writes them): not bound
MADE_BY = {"README.md": {"export/model.onnx"}, "docs/export.md": {"export/model.onnx"}}


def _ids(blocks: list[Block]) -> list[str]:
    return [b.id for b in blocks]


@pytest.mark.parametrize("block", BLOCKS, ids=_ids(BLOCKS))
def test_block_syntax(block):
    assert syntax_error(block) is None, f"{block.id}: {syntax_error(block)}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.shell],
                         ids=_ids([b for b in BLOCKS if b.shell]))
def test_block_flags_exist(block):
    assert not unknown_flags(block), \
        f"{block.id}: flags that --help does not list: {unknown_flags(block)}"


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory) -> Path:
    """A folder as a clone looks after `bash run.sh demo`: the demo's export/, engines/ and
    demo_output/, the sources, and .venv naming the environment these tests run in."""
    folder = tmp_path_factory.mktemp("docs_demo")
    done = subprocess.run([_bin("ocr-demo"), "--workdir", str(folder), "--iterations", "2",
                           "-q", "--json"], capture_output=True, text=True, timeout=600,
                          env=_env())
    assert done.returncode == 0, done.stderr[-2000:]
    (folder.parent / "demo_summary.json").write_text(done.stdout)  # test_demo_pipeline's
    for name in SOURCES:
        (folder / name).symlink_to(ROOT / name)
    (folder / ".venv").symlink_to(Path(sys.prefix))
    return folder


def _bin(tool: str) -> str:
    return str(Path(sys.executable).with_name(tool))


def _env() -> dict:
    """This environment's bin first on PATH, as an activated .venv has it."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
            f"{os.environ.get('PATH', '')}", "MPLBACKEND": "Agg"}


_PAGE_FOLDERS: dict[str, Path] = {}


def page_workdir(demo: Path, page: str) -> Path:
    """A copy of the demo's folder for one page (its blocks run in order in it, later ones
    using what earlier ones wrote), with the inputs the pages name (``INPUTS``: the user's
    model, images, calibration and validation folders) bound to the demo's; ``frame.png``
    is a 480x640 frame (the demo's end-to-end size), ``image.ppm`` the photo as a PPM."""
    if page not in _PAGE_FOLDERS:
        import shutil

        from PIL import Image

        from ocr_deploy.demo.synthetic import make_sample

        folder = demo.parent / page.replace("/", "_").replace(".md", "")
        shutil.copytree(demo, folder, symlinks=True)
        for name, source in INPUTS.items():
            if name not in MADE_BY.get(page, ()):
                (folder / name).symlink_to(folder / source)
        Image.fromarray(make_sample(3, 0, 480, 640)[0]).save(folder / "frame.png")
        Image.open(folder / INPUTS["photo.png"]).convert("RGB").save(folder / "image.ppm")
        _PAGE_FOLDERS[page] = folder
    return _PAGE_FOLDERS[page]


@pytest.mark.docs
@pytest.mark.slow
@pytest.mark.tensorflow  # ocr-demo exports the demo model
@pytest.mark.xdist_group("docs")  # one worker, page order: later blocks use earlier outputs
@pytest.mark.parametrize("block", BLOCKS, ids=_ids(BLOCKS))
def test_block_runs(block, demo_workdir):
    if block.skip:
        pytest.skip(f"{block.id}: {block.skip} (syntax and flags checked)")
    workdir = page_workdir(demo_workdir, block.page)
    argv = ["bash", "-e", "-o", "pipefail", "-c", block.script()] if block.shell \
        else [sys.executable, "-c", block.text]
    done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, env=_env())
    said = f"{block.id} in {workdir}:\n{block.text}\nstdout: {done.stdout[-2000:]}\n" \
           f"stderr: {done.stderr[-3000:]}"
    assert done.returncode == block.expect_exit, \
        f"exit {done.returncode}, the page says {block.expect_exit}: {said}"
    for path in block.expect_files:
        assert (workdir / path).exists(), f"the page promises {path}: {said}"
    if block.expect_json:
        result = json.loads(done.stdout)
        missing = [key for key in block.expect_json if key not in result]
        assert not missing, f"JSON keys the page promises are missing: {missing}: {said}"


# The collector itself

PAGE = """\
Text.

<!-- docs-test: expect-file out/x.labels.png -->
<!-- docs-test: expect-json images -->

```bash
ocr-predict engines/m.onnx x.png -o out/ --json
```

```c
int main(void) { return 0; }
```

<!-- docs-test: skip-run gpu: needs TensorRT -->
```sh
ocr-build-engine m.onnx --fp16 --backend tensorrt \\
    --dla-core 0
```

<!-- docs-test: expect-exit 2 -->
```console
$ ocr-predict missing.onnx x.png -o out/
ocr-predict: error: missing.onnx: ...
```

Prose between a directive and a block detaches it.
"""


def test_collector_reads_blocks_and_directives():
    first, skipped, console = parse(PAGE, "page.md")
    assert (first.line, first.language, first.expect_files, first.expect_json) == \
        (6, "bash", ["out/x.labels.png"], ["images"])
    assert first.skip is None and skipped.skip == "gpu: needs TensorRT"
    assert console.expect_exit == 2
    assert console.script() == "ocr-predict missing.onnx x.png -o out/\n"


def test_collector_refuses_malformed_directives():
    with pytest.raises(ValueError, match="skip-run needs the reason"):
        parse("<!-- docs-test: skip-run -->\n```bash\nls\n```\n", "p.md")
    with pytest.raises(ValueError, match="unknown docs-test directive 'skip'"):
        parse("<!-- docs-test: skip why -->\n```bash\nls\n```\n", "p.md")
    with pytest.raises(ValueError, match="never run"):
        parse("<!-- docs-test: skip-run x -->\n```c\nint x;\n```\n", "p.md")


def test_a_changed_flag_in_a_page_fails():
    """A flag renamed in the code but not in a page (or misspelt in a page) is reported,
    in a block that runs and in one only checked."""
    def helps(tool):
        return {"ocr-predict": "  -o OUTDIR\n  --json  print\n  --force  replace",
                "ocr-build-engine": "  --fp16\n  --backend {auto}\n  --dla-core N"}[tool]

    good = parse(PAGE, "page.md")
    assert [unknown_flags(b, helps) for b in good] == [[], [], []]
    renamed = parse(PAGE.replace("--dla-core", "--dla").replace("--json", "--as-json"),
                    "page.md")
    assert [unknown_flags(b, helps) for b in renamed] == [
        ["ocr-predict --as-json"], ["ocr-build-engine --dla"], []]


def test_a_changed_flag_in_the_readme_fails():
    """The same against the real README and the real --help: rename a flag it uses."""
    readme = (ROOT / "README.md").read_text()
    assert "--calib-dir" in readme
    blocks = parse(readme.replace("--calib-dir", "--calibration-dir"), "README.md")
    assert any("ocr-build-engine --calibration-dir" in unknown_flags(b)
               for b in blocks if b.shell)


def test_syntax_errors_are_reported():
    broken_shell, broken_python = parse("```bash\nif true; then\n```\n\n```python\ndef f(:\n```\n",
                                        "p.md")
    assert "syntax error" in syntax_error(broken_shell)
    assert syntax_error(broken_python)
