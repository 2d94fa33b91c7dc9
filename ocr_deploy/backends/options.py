"""Backend options as dataclasses whose fields are their own command-line flags.

A backend's build options are a frozen dataclass; each field is declared with ``option()``,
which records its flag, help text and parser. ``ocr-build-engine`` adds one argument group
per backend from them (the defaults ``--help`` shows are the dataclass's), reads the values
back with ``from_args``, and ``changed_flags`` names the flags given for a backend that is
not the one building, so the CLI can say they do nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

from ocr_deploy.renamed_flags import add_renamed


def option(default, flag: str, help: str, parse: Callable[[str], object] | None = None,
           metavar: str | None = None, action: str | None = None, shown: str | None = None,
           renamed_from: str | None = None):
    """A dataclass field that is also the flag ``flag``.

    ``action``: ``"store_true"`` / ``"store_false"`` for switches. ``shown``: how --help
    writes the default (default: the value itself). ``renamed_from``: the flag's old
    spelling, still accepted with a deprecation warning.
    """
    return dataclasses.field(default=default, metadata={
        "flag": flag, "help": help, "parse": parse, "metavar": metavar, "action": action,
        "shown": shown, "renamed_from": renamed_from})


def _flags(options_type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(options_type) if "flag" in f.metadata]


def _dest(prefix: str, field: dataclasses.Field) -> str:
    return f"{prefix}_{field.name}"


def add_arguments(parser: argparse.ArgumentParser, title: str, options_type,
                  prefix: str) -> None:
    """One argument group ``title`` with a flag per field of ``options_type``."""
    group = parser.add_argument_group(title)
    for field in _flags(options_type):
        meta = field.metadata
        shown = meta["shown"] if meta["shown"] is not None else field.default
        if meta["action"]:
            group.add_argument(meta["flag"], dest=_dest(prefix, field), action=meta["action"],
                               help=meta["help"])
            continue
        group.add_argument(meta["flag"], dest=_dest(prefix, field), type=meta["parse"],
                           default=field.default, metavar=meta["metavar"],
                           help=f"{meta['help']} (default: {shown})")
        if meta["renamed_from"]:
            add_renamed(group, meta["renamed_from"], meta["flag"], _dest(prefix, field),
                        type=meta["parse"], metavar=meta["metavar"])


def from_args(options_type, args: argparse.Namespace, prefix: str):
    """The options the parsed ``args`` give (fields without a flag keep their default)."""
    return options_type(**{f.name: getattr(args, _dest(prefix, f)) for f in _flags(options_type)})


def changed_flags(options) -> list[str]:
    """The flags of ``options`` whose values differ from the defaults."""
    return [f.metadata["flag"] for f in _flags(type(options))
            if getattr(options, f.name) != f.default]
