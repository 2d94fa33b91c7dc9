"""What every benchmark script shares: ``--smoke`` (tiny sizes, one round: shows the script
still runs, as tests/test_benchmarks.py checks for each; its figures mean nothing) and the
conditions of a run (machine, date, load) written beside every figure."""

from __future__ import annotations

import argparse
import os
import platform
import time


def add_smoke(parser: argparse.ArgumentParser) -> None:
    """``--smoke``: tiny sizes and one round (see ``shrink``)."""
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one round: checks that the script runs; its figures "
                             "mean nothing (default: off)")


def shrink(args: argparse.Namespace, **tiny) -> argparse.Namespace:
    """With ``--smoke``, set each option of ``tiny`` to its tiny value."""
    if args.smoke:
        for name, value in tiny.items():
            setattr(args, name, value)
    return args


def cpu_model() -> str:
    """The processor's name (Linux: /proc/cpuinfo), else the architecture."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def conditions() -> dict:
    """The machine, the date and the load a figure was measured under."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"machine": f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()}",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_average": [round(v, 2) for v in load]}


def conditions_line(facts: dict | None = None) -> str:
    """``conditions()`` as one line for a table's caption."""
    facts = facts or conditions()
    load = ", ".join(f"{v:.1f}" for v in facts["load_average"])
    return f"machine: {facts['machine']}; date: {facts['date']}; load average (1/5/15 min): {load}"
