"""Export one corpus entry through the real ``ocr-export`` entry point and collect the
outcome (exit code, one-line message, parity figures, time)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from corpus.models import CorpusModel


@dataclass
class Outcome:
    """What ``ocr-export`` did with one model."""

    exit_code: int
    message: str  # the last stderr line (the one-line error, or empty)
    report: dict | None  # the --json summary on success
    export_s: float
    args: list[str]

    def row(self) -> dict:
        parity = (self.report or {}).get("parity", {}).get("outputs", [])
        main = next((o for o in parity if o["kind"] in ("logits", "probabilities")), None)
        outcome = {0: "exported", 2: "refused (2)", 3: "parity failed (3)",
                   4: "converter failed (4)"}.get(self.exit_code, f"exit {self.exit_code}")
        meta = (self.report or {}).get("metadata", {})
        attention = meta.get("attention", {})
        notes = []
        if meta.get("tools", {}).get("batch", "dynamic") != "dynamic":
            notes.append(f"batch {meta['tools']['batch']}")
        if meta.get("source", {}).get("dtype_policy"):
            notes.append(f"{meta['source']['dtype_policy']} -> float32")
        if attention.get("cores"):
            notes.append(f"attention: {len(attention['cores'])} core(s) {attention['form']}")
        if attention.get("left_as_exported"):
            notes.append(f"{len(attention['left_as_exported'])} softmax(es) left as exported")
        inputs = meta.get("parity", {}).get("inputs", {}).get("source")
        if inputs:
            notes.append(f"inputs: {inputs.split(' (')[0]}")
        if self.exit_code and ", found " in self.message:  # why it was refused, and what to do
            found = self.message.split(", found ", 1)[1]
            notes.append(found if len(found) <= 160 else found[:157] + "...")
        return {"exit": self.exit_code, "outcome": outcome, "message": self.message,
                "max_rel_err": main["max_rel_err"] if main else None,
                "labels": main["label_agreement_excl_ties"] if main else None,
                "output": main["name"] if main else None, "export_s": self.export_s,
                "notes": "; ".join(notes)}


OCR_EXPORT = Path(sys.executable).parent / "ocr-export"


def export_entry_in_subprocess(entry: CorpusModel, folder: Path, env: dict) -> Outcome:
    """Like ``export_entry``, but ``ocr-export`` runs as a fresh process with ``env`` added
    to the environment; its time includes starting Python and importing TensorFlow."""
    path, extra = entry.build(folder)
    args = [str(path), "-o", str(folder / "out.onnx"), "--json", *extra]
    start = time.perf_counter()
    done = subprocess.run([str(OCR_EXPORT), *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)
    elapsed = round(time.perf_counter() - start, 2)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    report = json.loads(done.stdout) if done.returncode == 0 else None
    return Outcome(done.returncode, lines[-1] if lines else "", report, elapsed, args)


def run_entry(entry: CorpusModel, folder: Path) -> Outcome:
    """Export ``entry`` the way it asks for: in this process, or as a fresh command."""
    if entry.fresh_process:
        return export_entry_in_subprocess(entry, folder, {})
    return export_entry(entry, folder)


def export_entry(entry: CorpusModel, folder: Path) -> Outcome:
    """Build ``entry`` in ``folder`` and run ``ocr-export MODEL -o folder/out.onnx --json``."""
    from ocr_deploy.export.cli import main

    path, extra = entry.build(folder)
    args = [str(path), "-o", str(folder / "out.onnx"), "--json", *extra]
    stdout, stderr = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(args)
    elapsed = round(time.perf_counter() - start, 2)
    lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
    report = json.loads(stdout.getvalue()) if code == 0 else None
    return Outcome(code, lines[-1] if lines else "", report, elapsed, args)
