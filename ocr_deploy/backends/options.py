"""Backend options as dataclasses whose fields are their own command-line flags.

A backend's build options are a frozen dataclass; each field is declared with ``option()``,
which records its flag, help text and parser. ``ocr-build-engine`` adds one argument group
per backend from them (the defaults ``--help`` shows are the dataclass's), reads the values
back with ``from_args``, and ``changed_flags`` names the flags given for a backend that is
not the one building, so the CLI can say they do nothing.

The command requests (``BuildRequest``, ``ExportRequest``) are declared the same way, with
``group`` (the help section a flag goes in) and ``needs`` (when it does something, for the
ignored-option warning); ``parts`` declares one field set by several flags (a
``CalibrationSettings`` from --calib-method and --percentile). ``add_declared`` adds a
section's flags (their help as written: the shared help format adds the default),
``declared_values`` reads the fields back and ``changed_declared`` names the flags given.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

from ocr_deploy.renamed_flags import add_renamed


def option(default, flag: str, help: str, parse: Callable[[str], object] | None = None,
           metavar: str | None = None, action: str | None = None, shown: str | None = None,
           renamed_from: str | None = None, *, factory: Callable[[], object] | None = None,
           short: str | None = None, choices=None, nargs: str | None = None,
           group: str | None = None, needs: str | None = None):
    """A dataclass field that is also the flag ``flag``.

    ``action``: ``"store_true"`` / ``"store_false"`` for switches. ``shown``: how --help
    writes the default (default: the value itself). ``renamed_from``: the flag's old
    spelling, still accepted with a deprecation warning. For requests: ``factory``
    instead of ``default`` for a mutable default, ``short`` (``-o``), ``choices``,
    ``nargs``, ``group`` and ``needs`` (see the module docstring).
    """
    metadata = {"flag": flag, "help": help, "parse": parse, "metavar": metavar,
                "action": action, "shown": shown, "renamed_from": renamed_from,
                "short": short, "choices": choices, "nargs": nargs, "group": group,
                "needs": needs}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def part(name: str, flag: str, help: str, parse: Callable[[str], object] | None = None,
         metavar: str | None = None, choices=None) -> dict:
    """One flag setting the field ``name`` of a ``parts`` field's value."""
    return {"name": name, "flag": flag, "help": help, "parse": parse, "metavar": metavar,
            "choices": choices}


def parts(factory: Callable[[], object], *flags: dict, group: str | None = None,
          needs: str | None = None):
    """A request field whose value (``factory()`` by default) several flags (``part``) set."""
    return dataclasses.field(default_factory=factory, metadata={
        "flag": "/".join(p["flag"] for p in flags), "parts": flags, "group": group,
        "needs": needs})


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


def add_declared(container, request_type, group: str | None = None) -> None:
    """The flags of ``request_type``'s fields declared for ``group`` (None: the main
    section), added to ``container`` (a parser or an argument group) in field order."""
    for field in _flags(request_type):
        meta = field.metadata
        if meta["group"] != group:
            continue
        default = _default(field)
        for flag in meta.get("parts") or (meta,):
            kwargs = {"help": flag["help"]}
            if flag.get("action"):
                kwargs["action"] = flag["action"]
            else:
                kwargs.update(type=flag["parse"], metavar=flag["metavar"],
                              default=getattr(default, flag["name"]) if "name" in flag
                              else default)
                kwargs.update({k: flag[k] for k in ("choices", "nargs") if flag.get(k)})
            container.add_argument(*filter(None, (flag.get("short"), flag["flag"])),
                                   **kwargs)


def declared_values(request_type, args: argparse.Namespace) -> dict:
    """The values the parsed ``args`` give the declared fields of ``request_type``."""
    values = {}
    for field in _flags(request_type):
        parts_ = field.metadata.get("parts")
        if parts_:
            values[field.name] = type(_default(field))(**{
                p["name"]: getattr(args, _arg_dest(p["flag"])) for p in parts_})
        else:
            values[field.name] = getattr(args, _arg_dest(field.metadata["flag"]))
    return values


def changed_declared(request, needs: set[str] | None = None,
                     names: tuple[str, ...] | None = None) -> list[str]:
    """The flags (``--a/--b`` for a field several flags set) of ``request``'s declared
    fields given other values than the defaults: those whose ``needs`` is in ``needs``,
    or those named in ``names``."""
    return [field.metadata["flag"] for field in _flags(type(request))
            if (needs is None or field.metadata["needs"] in needs)
            and (names is None or field.name in names)
            and getattr(request, field.name) != _default(field)]


def _default(field: dataclasses.Field):
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _arg_dest(flag: str) -> str:
    """The destination argparse gives ``flag`` (``--calib-dir`` -> ``calib_dir``)."""
    return flag.lstrip("-").replace("-", "_")


def changed_flags(options) -> list[str]:
    """The flags of ``options`` whose values differ from the defaults."""
    return [f.metadata["flag"] for f in _flags(type(options))
            if getattr(options, f.name) != f.default]
