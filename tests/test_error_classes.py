"""Every user-facing failure is an ``OcrDeployError`` from ``ocr_deploy.errors`` with its
documented exit code: graph passes, closed segmenters, ocr-bench on code-carrying models."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from ocr_deploy.errors import (
    EXIT_BAD_INPUT,
    EXIT_CONVERSION,
    BadInputError,
    GraphError,
)


def test_graph_passes_raise_graph_errors():
    from ocr_deploy.graph.core_model import build_core_model
    from ocr_deploy.graph.index import toposort

    nodes = [helper.make_node("Relu", ["b"], ["a"], name="first"),
             helper.make_node("Relu", ["a"], ["b"], name="second")]
    value = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])
    model = helper.make_model(helper.make_graph(nodes, "cycle", [], [value]))
    with pytest.raises(GraphError, match="found a cycle or a missing input near first, "
                                         "second") as info:
        toposort(model)
    assert info.value.exit_code == EXIT_CONVERSION and "\n" not in info.value.one_line()
    with pytest.raises(BadInputError, match=r"a form among .*found 'fused'"):
        build_core_model("fused")


def test_closed_segmenter_says_so_everywhere(nhwc_onnx):
    from ocr_deploy.runtime import Segmenter

    seg = Segmenter.open(nhwc_onnx)
    seg.close()
    calls = [seg.describe, lambda: seg.input_shape(1), lambda: seg.output_shape("labels", 1),
             lambda: seg.output_dtype("labels"), lambda: seg.input_dtype,
             lambda: seg.output_names, lambda: seg.predict(np.zeros((8, 8, 3), np.uint8))]
    for call in calls:
        with pytest.raises(BadInputError, match="expected an open segmenter, found a closed "
                                                "one; open it again") as info:
            call()
        assert info.value.exit_code == EXIT_BAD_INPUT


def test_ocr_bench_does_not_advise_a_flag_it_lacks(lambda_h5, capsys):
    from ocr_deploy.bench.cli import main

    assert main([str(lambda_h5), "--batch-sizes", "1", "--iterations", "1"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "Lambda" in err and "pass --trust-model" not in err
    assert "export it with ocr-export --trust-model and benchmark the .onnx" in err
