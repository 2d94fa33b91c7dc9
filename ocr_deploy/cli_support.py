"""What every ocr-* command shares: error handling, exit codes, JSON output, parsers."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from ocr_deploy.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, OcrDeployError
from ocr_deploy.files import WRITE_ERRNOS, write_error


def run_command(prog: str, body: Callable[[argparse.Namespace], int],
                parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv``, run ``body`` and turn errors into one line and an exit code.

    ``--debug`` (added here) re-raises unexpected errors with their traceback.
    """
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of unexpected errors")
    args = parser.parse_args(argv)
    try:
        return body(args)
    except OcrDeployError as exc:
        print(f"{prog}: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            return _internal(prog, exc, args.debug)
        error = write_error(exc.filename or "?", WRITE_ERRNOS[exc.errno])
        print(f"{prog}: error: {error.one_line()}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing was written", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:
        return _internal(prog, exc, args.debug)


def _internal(prog: str, exc: Exception, debug: bool) -> int:
    if debug:
        raise exc
    message = " ".join(str(exc).split())[:300]
    print(f"{prog}: internal error: {type(exc).__name__}: {message} "
          f"(rerun with --debug for the traceback and report it)", file=sys.stderr)
    return EXIT_INTERNAL


def print_json(data: dict) -> None:
    """Print a result as JSON on stdout (progress goes to stderr)."""
    print(json.dumps(data, indent=2, default=str))


def size_arg(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``512x1024``)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
        if height <= 0 or width <= 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW like 512x1024, found '{text}'") from None
    return height, width


def floats_arg(text: str) -> list[float]:
    """Parse three comma-separated floats (per-channel mean or std)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected 3 comma-separated numbers, found '{text}'")
    return values


__all__ = ["EXIT_OK", "floats_arg", "print_json", "run_command", "size_arg"]
