"""The one warning channel: Python warnings come out as every other warning line when a
command runs, and repeated warnings fold into one line."""

import io
import warnings

from ocr_deploy.cli_support import parser_for, run_command
from ocr_deploy.warning_channel import folded, routed_warnings


def test_python_warnings_print_as_warning_lines_while_a_command_runs(capsys):
    def body(args) -> int:
        warnings.warn("the engine was built on another GPU", stacklevel=2)
        warnings.warn("a runtime note", RuntimeWarning, stacklevel=2)
        return 0

    assert run_command("ocr-x", body, parser_for("ocr-x", None), []) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: the engine was built on another GPU",
                   "warning: a runtime note (RuntimeWarning)"]
    assert warnings.showwarning is not None and "UserWarning" not in "".join(err)


def test_routing_ends_with_the_block():
    before = warnings.showwarning
    stream = io.StringIO()
    with routed_warnings(stream):
        assert warnings.showwarning is not before
        warnings.warn("inside", stacklevel=2)
    assert warnings.showwarning is before and stream.getvalue() == "warning: inside\n"


def test_a_repeated_warning_is_one_line_naming_its_subjects():
    text = folded("runs vary more than 5 %", ["a.onnx batch 1", "b.onnx batch 2"], "rows",
                  "measure longer")
    assert text == ("warning: runs vary more than 5 % in 2 rows: a.onnx batch 1, "
                    "b.onnx batch 2; measure longer")
    assert "\n" not in text
