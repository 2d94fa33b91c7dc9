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
    text = folded("runs vary more than 5 % in 2 of 4 timings", ["a.onnx 8x8 (all)",
                                                               "b.onnx 8x8 (batch 2 compute)"],
                  "measure longer")
    assert text == ("warning: runs vary more than 5 % in 2 of 4 timings: a.onnx 8x8 (all), "
                    "b.onnx 8x8 (batch 2 compute); measure longer")


def test_the_bench_table_ends_with_one_line_for_unstable_timings():
    from ocr_deploy.bench.report import format_table
    from ocr_deploy.bench.stats import latency_stats, variability_warning

    steady, noisy = latency_stats([0.01] * 20, 1), latency_stats([0.01, 0.03] * 10, 1)
    results = [{"name": name, "backend": "onnxruntime", "device": "cpu", "image_size": [8, 8],
                "memory": {"peak_rss_mib": 1.0},
                "batches": [{"batch": b, "compute": noisy, "pipeline": pipeline}
                            for b, pipeline in ((1, noisy), (2, second))]}
               for name, second in (("a.onnx", noisy), ("b.onnx", steady))]
    warnings_ = ["a.onnx: batch 8 skipped: it takes exactly 2"] + [
        variability_warning(r["name"], e["batch"], mode, e[mode])
        for r in results for e in r["batches"] for mode in ("compute", "pipeline")
        if e[mode]["unstable"]]
    table = format_table({"results": results, "warnings": warnings_})
    warned = [t for t in table.splitlines() if t.startswith("warning: ")]
    assert warned == ["warning: a.onnx: batch 8 skipped: it takes exactly 2",
                      "warning: runs vary more than 5 % ('!') in 7 of 8 timings: a.onnx 8x8 "
                      "(all), b.onnx 8x8 (batch 1 compute, batch 1 pipeline, batch 2 "
                      "compute); close other programs, or measure longer (--duration, more "
                      "--iterations)"]
