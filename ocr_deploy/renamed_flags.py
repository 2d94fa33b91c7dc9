"""Old spellings of command-line flags: accepted, hidden from ``--help``, noted for a
deprecation warning. Low enough for option declarations (``backends.options``) and the
CLIs (``cli_support.run_command`` prints the notes) alike."""

from __future__ import annotations

import argparse


class _Renamed(argparse.Action):
    """An old spelling of a flag: stores into the new flag's destination and leaves a note
    that ``run_command`` prints as a deprecation warning."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        notes = getattr(namespace, "_renamed", [])
        namespace._renamed = [*notes, (option_string, self.new)]


def add_renamed(parser, old: str, new: str, dest: str, **kwargs) -> None:
    """Accept ``old`` (hidden from --help) for the flag now called ``new``, with a warning."""
    parser.add_argument(old, dest=dest, action=_Renamed, new=new, help=argparse.SUPPRESS,
                        **kwargs)


def renamed_notes(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(old flag, new flag)`` for each old spelling the parsed ``args`` used."""
    return list(getattr(args, "_renamed", []))
