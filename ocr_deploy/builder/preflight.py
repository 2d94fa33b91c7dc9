"""``ocr-build-engine M.onnx --backend tensorrt --preflight``: the graphs a TensorRT build
would hand to the parser, made the way the build makes them (the precision ONNX for the
TensorRT placement and typing, the end-to-end wrap for TensorRT's graph target), each judged
by the preflight (``backends.tensorrt.preflight``: NVIDIA's published parser rules, not a
TensorRT run). Works without TensorRT and writes nothing. With ``--dla-core`` each form also
names the nodes DLA's published restrictions leave to the GPU, and a precision the DLA
build refuses is reported as refused.

INT8 graphs get placeholder ranges instead of calibration (nothing is read or cached): the
rules judge where Q/DQ nodes are and their types, zero points and axes, never the scale
values, so the graph's structure is the one a calibrated build makes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ocr_deploy import backends
from ocr_deploy.backends.tensorrt.preflight import preflight, target_version
from ocr_deploy.builder.job import flatten
from ocr_deploy.builder.pipeline import kept_layers, precision_model, read_source
from ocr_deploy.builder.request import BuildRequest, validate
from ocr_deploy.contract.metadata import write_metadata
from ocr_deploy.contract.signature import check_onnx
from ocr_deploy.precision.calibrate import TensorRange, calibrated_tensors

PLACEHOLDER_RANGE = TensorRange(-1.0, 1.0, 1.0)


@dataclass(frozen=True)
class PlaceholderCalibration:
    """Ranges for every tensor a placement may quantise, all ``PLACEHOLDER_RANGE``
    (``quantize_int8`` reads only ``ranges``)."""

    ranges: dict


def preflight_forms(request: BuildRequest, precisions: tuple[str, ...] | None = None,
                    version: str | None = None, note=lambda _: None) -> dict:
    """Every graph a TensorRT build of ``request`` would parse, for each precision in
    ``precisions`` (default: the request's), judged for TensorRT ``version`` (default: the
    installed one, else ``preflight.DEFAULT_VERSION``). JSON-ready; ``accepted`` is whether
    every form passes."""
    version = target_version(version)
    source = Path(request.onnx)
    _, fp32_model = read_source(source)
    meta = check_onnx(fp32_model, source)
    backend = backends.get("tensorrt")
    e2e = request.end_to_end
    if e2e is not None:
        e2e.validate(meta, source)
    options = backend.resolve_options(request.options_for(backend), fp32_model, source, note)
    forms = []
    for precision in precisions or (request.precision,):
        asked = replace(request, precision=precision)
        validate(asked)
        placement = backend.placement(options) if precision == "int8" else None
        calibration = PlaceholderCalibration(
            {name: PLACEHOLDER_RANGE for name in calibrated_tensors(fp32_model)}) \
            if placement else None
        exclusions = kept_layers(asked, fp32_model, placement)
        model = precision_model(asked, fp32_model, calibration, placement,
                                 flatten(exclusions))
        core_meta = replace(meta, precision=precision)
        write_metadata(model, core_meta)
        graphs = [("core", model)]
        if e2e is not None:
            wrapped, _ = e2e.wrap(model, core_meta, backend.graph_target, source)
            graphs.append((f"end-to-end ({e2e.describe()})", wrapped))
        refused = _build_refusal(options, precision, version)
        for form, graph in graphs:
            report = preflight(graph, version, dla=options.dla_core is not None)
            entry = {"form": form, "precision": precision,
                     "typing": "weak (builder flags)" if options.builder_flags
                     else "strong", **report.to_dict()}
            if refused:
                entry.update(accepted=False, build_refuses=refused)
            forms.append(entry)
    return {"onnx": str(source), "tensorrt_version": version,
            "accepted": all(form["accepted"] for form in forms), "forms": forms,
            "what": "NVIDIA's published ONNX-parser rules (backends/tensorrt/parser_rules.py); "
                    "not a TensorRT run: kernels, fusions, memory and accuracy need a GPU"}


def _build_refusal(options, precision: str, version: str) -> str | None:
    """What the TensorRT build itself refuses for these options before parsing (DLA in
    another precision than FP16, builder flags on 11.x...), or None."""
    from ocr_deploy.backends.tensorrt.build import weak_typing_flags
    from ocr_deploy.errors import BadInputError

    try:
        weak_typing_flags(options, precision, version)
    except BadInputError as exc:
        return exc.one_line()
    return None


def summary(result: dict) -> list[str]:
    """Lines for the terminal: one per form, then one per finding."""
    lines = []
    for form in result["forms"]:
        verdict = "accepted" if form["accepted"] else "REFUSED by the build" \
            if form.get("build_refuses") else f"REFUSED ({len(form['findings'])} finding(s))"
        lines.append(f"{form['form']}, {form['precision']}, {form['typing']} typing: "
                     f"{verdict} by TensorRT {form['tensorrt_version']}'s parser rules "
                     f"(operator matrix {form['operator_matrix']})")
        if form.get("build_refuses"):
            lines.append(f"  the build refuses it before parsing: {form['build_refuses']}")
        lines += [f"  {f['node']} ({f['op']}): [{f['rule']}] {f['detail']} "
                  f"(source: {f['source']})" for f in form["findings"]]
        fallback = form.get("dla_gpu_fallback")
        if fallback is not None:
            lines.append(f"  DLA: {len(fallback)} of {form['nodes']} node(s) would fall back "
                         "to the GPU (DLA's published restrictions)")
            lines += [f"    {f['node']} ({f['op']}): [{f['rule']}] {f['detail']}"
                      for f in fallback]
    return lines

