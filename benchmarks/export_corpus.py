"""Export every model of the corpus (tests/corpus) with ocr-export and print a table.

    python benchmarks/export_corpus.py [--only NAME ...] [--json FILE]

For each model: the writer (Keras 3 / tf_keras), the outcome (exit code), the parity
relative error (max abs error / output scale), the label agreement (ties aside), the
export time (the ocr-export call alone, in this process; building the model excluded) and
notes (fixed batch, attention cores, parity input range; for a refusal, what was found and
the way out). Entries marked ``fresh_process`` run as an ``ocr-export`` command, whose
time includes starting Python and importing TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from corpus import CORPUS
from corpus.run import run_entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="corpus entries to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    harness.add_smoke(parser)
    args = harness.shrink(parser.parse_args(), only=[CORPUS[0].name])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for entry in CORPUS:
            if args.only and entry.name not in args.only:
                continue
            folder = Path(tmp) / entry.name
            folder.mkdir()
            start = time.perf_counter()
            outcome = run_entry(entry, folder)
            rows.append({"model": entry.name, "writer": entry.writer, **outcome.row(),
                         "wall_s": round(time.perf_counter() - start, 1)})
            print(_line(rows[-1]), file=sys.stderr, flush=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


def _line(row: dict) -> str:
    return f"{row['model']}: exit {row['exit']} {row['message'][:200]}"


def table(rows: list[dict]) -> str:
    """A Markdown table of the rows."""
    lines = ["| model | writer | outcome | output | parity rel. error | labels (ties aside) | "
             "export s | notes |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        rel = f"{r['max_rel_err']:.1e}" if r["max_rel_err"] is not None else "-"
        labels = f"{100 * r['labels']:.2f} %" if r["labels"] is not None else "-"
        lines.append(f"| {r['model']} | {r['writer']} | {r['outcome']} | {r['output'] or '-'} "
                     f"| {rel} | {labels} | {r['export_s']:.1f} | {r['notes']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
