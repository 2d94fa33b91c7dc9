"""What every ocr-* command shares: error handling, exit codes, JSON output, the help
format (every option with its default), the common flags and their argument types."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from ocr_deploy.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, OcrDeployError
from ocr_deploy.files import WRITE_ERRNOS, write_error
from ocr_deploy.renamed_flags import add_renamed, renamed_notes
from ocr_deploy.warning_channel import routed_warnings, warn


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; every option that takes a value shows its default (unless
    its help already says it); switches are off unless given."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.nargs == 0 or "default" in text
                or action.default in (None, argparse.SUPPRESS) or text == argparse.SUPPRESS):
            return text
        shown = ",".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) \
            else "%(default)s"
        return f"{text} (default: {shown})"


def parser_for(prog: str, doc: str | None, epilog: str | None = None
               ) -> argparse.ArgumentParser:
    """The argument parser of an ocr-* command, in the shared help format."""
    return argparse.ArgumentParser(prog=prog, description=doc, epilog=epilog,
                                   formatter_class=HelpFormatter)


def add_reporting(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    """``--json`` (``what`` as JSON on stdout) and ``-q/--quiet``, in one group."""
    group = parser.add_argument_group("reporting")
    group.add_argument("--json", action="store_true",
                       help=f"print {what} as JSON on stdout (progress stays on stderr)")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def add_force(parser, what: str = "an existing output") -> None:
    """``--force``: replace ``what`` (atomically: the old one stays until the new is done)."""
    parser.add_argument("--force", action="store_true", help=f"replace {what} (atomically)")


def run_command(prog: str, body: Callable[[argparse.Namespace], int],
                parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv``, run ``body`` and turn errors into one line and an exit code.

    ``--debug`` (added here) re-raises unexpected errors with their traceback.
    """
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of unexpected errors")
    args = parser.parse_args(argv)
    for old, new in renamed_notes(args):
        warn(f"{old} is deprecated: use {new}")
    try:
        with routed_warnings():
            return body(args)
    except OcrDeployError as exc:
        print(f"{prog}: error: {exc.one_line()}", file=sys.stderr)
        for line in getattr(exc, "details", ()):  # e.g. one line per preflight finding
            print(f"{prog}:   {line}", file=sys.stderr)
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
        from ocr_deploy.memory_budget import allocation_failure, exhausted

        failed, needed = allocation_failure(exc)
        if failed and not args.debug:
            error = exhausted(prog, needed, f"{type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:160]}", prog)
            print(f"{prog}: error: {error.one_line()}", file=sys.stderr)
            return error.exit_code
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


def positive_int(text: str) -> int:
    """Parse an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found '{text}'")
    return value


def non_negative_int(text: str) -> int:
    """Parse an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, found '{text}'")
    return value


def int_list(text: str) -> list[int]:
    """Parse ``1,4,8`` (whole numbers >= 1), sorted, without repeats."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected sizes like 1,4,8, found '{text}'")
    return sorted(set(values))


def name_list(text: str) -> list[str]:
    """Parse ``cuda,cpu`` (at least one name)."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, found '{text}'")
    return names


__all__ = ["EXIT_OK", "HelpFormatter", "add_force", "add_renamed", "add_reporting",
           "floats_arg", "int_list", "name_list", "non_negative_int", "parser_for",
           "positive_int", "print_json", "run_command", "size_arg"]
