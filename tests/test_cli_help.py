"""Every ocr-* command's parser: every option has a help line, every option that takes a
value says its default, and one flag name means one thing across the commands."""

from __future__ import annotations

import argparse
import importlib

import pytest

COMMANDS = {"ocr-export": "ocr_deploy.export.cli", "ocr-build-engine": "ocr_deploy.builder.cli",
            "ocr-predict": "ocr_deploy.runtime.predict_cli", "ocr-bench": "ocr_deploy.bench.cli",
            "ocr-package": "ocr_deploy.packaging.cli", "ocr-serve": "ocr_deploy.serving.serve_cli",
            "ocr-demo": "ocr_deploy.demo.cli"}
# flags that mean one thing wherever they appear (what they take)
SHARED = {"--json": 0, "-q": 0, "--force": 0, "-o": 1, "--backend": 1}


def _parser(module: str) -> argparse.ArgumentParser:
    parser = importlib.import_module(module).build_parser()
    parser.add_argument("--debug", action="store_true", help="(added by run_command)")
    return parser


def _options(parser):
    return [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS
            and not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_help_and_its_default(command):
    parser = _parser(COMMANDS[command])
    text = parser.format_help()
    for action in _options(parser):
        assert action.help, f"{command} {action.option_strings[0]} has no help"
        if action.nargs != 0 and not action.required:
            line = parser._get_formatter()._get_help_string(action) % {
                "default": action.default}
            assert "default" in line, f"{command} {action.option_strings[0]}: no default"
    for positional in (a for a in parser._actions if not a.option_strings):
        assert positional.help, f"{command} {positional.dest} has no help"
    assert "--debug" in text


def test_one_meaning_per_flag_name():
    seen: dict[str, tuple] = {}
    for command, module in COMMANDS.items():
        for action in _options(_parser(module)):
            for flag in action.option_strings:
                nargs = 0 if action.nargs == 0 else 1
                if flag in SHARED:
                    assert nargs == SHARED[flag], f"{command} {flag}"
                meaning = seen.setdefault(flag, (command, action.dest, nargs))
                assert meaning[2] == nargs, f"{flag}: {meaning[0]} and {command} differ"
    assert "--batch" not in seen  # a profile, a chunk size and a list now have names
    assert {"--batch-profile", "--max-batch", "--batch-sizes", "--model-version"} <= set(seen)
