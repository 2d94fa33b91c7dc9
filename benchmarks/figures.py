"""Regenerate every figure table of benchmarks/README.md with one command.

    python benchmarks/figures.py --quick        # a few minutes: smaller runs of each script
    python benchmarks/figures.py --full         # the commands the figures were made with
    python benchmarks/figures.py --quick --only compare_backends,runtime_overhead

Each table is a script's own printed output, written between ``<!-- figures:NAME -->`` and
``<!-- /figures:NAME -->`` in benchmarks/README.md with the command, the machine, the date
and the load average before and after the run beside it (a table whose markers are
missing is appended at the end). Pages that quote a figure link to its section instead of
restating it. Scripts without figures here (gpu_check.py, attention_gpu.py: a GPU;
end_to_end_profile.py: a diagnostic of one artifact) are not run.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
# name -> (what the table shows, --quick arguments, --full arguments)
TABLES = {
    "compare_backends": ("Keras against ONNX Runtime FP32 / FP16 / INT8 via ocr-bench, demo "
                         "model (ratios against FP32 in the same run)",
                         ["--skip-cityscapes"], []),
    "runtime_overhead": ("the runtime wrapper against a bare InferenceSession.run",
                         ["--pairs-demo 300 --skip-cityscapes"], []),
    "precision_figures": ("demo mIoU, agreement, latency and size of FP32 / FP16 / INT8",
                          ["--calib-samples 32 --val-samples 50 --iterations 20"], []),
    "int8_figures": ("INT8 against FP32 and quantize_static on ONNX Runtime CPU (interleaved)",
                     ["speed --iterations 10"], ["all --iterations 40"]),
    "export_figures": ("whole-process ocr-export time, peak RSS and parity",
                       ["--skip-cityscapes"], []),
    "capi_overhead": ("the C ABI against Segmenter.predict from Python",
                      ["--pairs 3 --calls 100 --images 100"], []),
    "end_to_end": ("end-to-end artifacts against today's runtime, 1024x2048 frames",
                   ["--models demo --rounds 3"], []),
    "attention_forms": ("the attention core's forms on ONNX Runtime CPU",
                        ["--feature-maps 128x256 --models '' --core-repeats 10"], []),
    "triton_load": ("concurrent clients against the Python-backend model in Triton, with the "
                    "in-process throughput beside it as a ratio",
                    ["--clients 1,4 --requests 20 --image-size 480x640"],
                    ["--clients 1,4,8 --requests 50 --image-size 480x640 --instances 2 "
                     "--threads 1"]),
}


def run_table(name: str, arguments: list[str]) -> str:
    """Run one script; return its Markdown section (caption and output)."""
    argv = [sys.executable, str(HERE / f"{name}.py"), *arguments]
    command = " ".join(["python", f"benchmarks/{name}.py", *map(shlex.quote, arguments)])
    print(f"figures: {command} ...", file=sys.stderr, flush=True)
    before = harness.conditions()
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=HERE.parent)
    if done.returncode != 0:
        raise SystemExit(f"figures: {command} failed (exit {done.returncode}): "
                         f"{done.stderr.strip()[-1500:]}")
    after = harness.conditions()
    load = ", ".join(f"{v:.1f}" for v in after["load_average"])
    caption = (f"`{command}` ({time.perf_counter() - start:.0f} s) — "
               f"{harness.conditions_line(before)}; after: {load}")
    return f"{caption}\n\n```text\n{done.stdout.strip()}\n```"


def replace_section(text: str, name: str, what: str, section: str) -> str:
    """``text`` with the section of ``name`` replaced (or appended)."""
    body = f"<!-- figures:{name} -->\n### {name}\n\n{what}.\n\n{section}\n<!-- /figures:{name} -->"
    pattern = re.compile(rf"<!-- figures:{name} -->.*?<!-- /figures:{name} -->", re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: body, text)
    return text.rstrip("\n") + "\n\n" + body + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="smaller runs, a few minutes in all (default)")
    size.add_argument("--full", action="store_true",
                      help="the runs the figures are quoted from (long: up to an hour)")
    parser.add_argument("--only", type=lambda t: [v for v in t.split(",") if v],
                        help="tables to regenerate, comma-separated (default: all: "
                             f"{','.join(TABLES)})")
    parser.add_argument("--readme", type=Path, default=README,
                        help="the page to write the tables into (default benchmarks/README.md)")
    harness.add_smoke(parser)
    args = parser.parse_args()
    names = args.only or list(TABLES)
    unknown = sorted(set(names) - set(TABLES))
    if unknown:
        parser.error(f"--only: unknown table(s) {unknown}; choose from {', '.join(TABLES)}")
    readme = args.readme
    if args.smoke:  # one script's --smoke into a copy of the page: the writing is checked
        names = ["runtime_overhead"]
        readme = Path(tempfile.mkdtemp(prefix="figures_smoke-")) / "README.md"
        readme.write_text(README.read_text())
    text = readme.read_text()
    for name in names:
        what, quick, full = TABLES[name]
        arguments = ["--smoke"] if args.smoke else \
            [a for chunk in (full if args.full else quick) for a in shlex.split(chunk)]
        text = replace_section(text, name, what, run_table(name, arguments))
        readme.write_text(text)  # after each table: an interrupted run keeps the others
    print(f"figures: {len(names)} table(s) written to {readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    raise SystemExit(main())
