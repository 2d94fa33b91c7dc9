"""Choose and apply the form of OCRNet's attention core in an exported ONNX model.

``apply_attention_form(model, form, target)`` is what the exporter calls, before its
parity check. Forms: ``decomposed`` (MatMul -> Softmax -> MatMul with the scale on Q, the
pattern TensorRT fuses), ``attention`` (the opset-23 ``Attention`` op), ``keep`` (as
exported) and ``auto`` (the form measured or known to be best for ``target``, a backend's
``GraphTarget``: its ``forms["attention"]`` and why). The returned info dict says what was
found, what changed and why.

``auto`` never fails an export: it rewrites every core it understands, leaves anything
else as exported (softmaxes that look like a core but break the pattern are listed under
``left_as_exported`` with the reason) and, should a rewrite not validate, keeps the graph as
exported and says so. Only an explicit ``decomposed`` or ``attention`` refuses.
"""

from __future__ import annotations

import copy

import onnx

from ocr_deploy.errors import BadInputError, ConversionError, OcrDeployError
from ocr_deploy.graph.find import Findings, find_attention_cores
from ocr_deploy.graph.forms import ATTENTION_OPSET, to_attention, to_decomposed, upgrade_opset
from ocr_deploy.graph.index import name_nodes, opset_of, remove_dead, toposort
from ocr_deploy.graph.target import GraphTarget, graph_target

FORMS = ("auto", "decomposed", "attention", "keep")
PATTERN = "MatMul(Q, K^T) -> [Mul/Div by a constant] -> Softmax over keys -> MatMul(P, V)"

def apply_attention_form(model, form: str = "auto", target: GraphTarget | str = "onnxruntime",
                         source: object = None) -> tuple[onnx.ModelProto, dict]:
    """Rewrite every attention core of ``model`` into ``form``; returns (model, info).

    ``model`` is not modified (``keep`` returns it as is). ``source`` names the model in
    error messages. Raises ``BadInputError`` when a rewrite is asked for and no core, or an
    ambiguous one, is found.
    """
    if form not in FORMS:
        raise BadInputError(None, f"an attention form among {', '.join(FORMS)}", f"'{form}'",
                            "pick one of them")
    target = graph_target(target)  # an unknown backend name is a BadInputError
    findings = find_attention_cores(model)
    chosen, reason = _choose(form, target, findings, source)
    info = {"requested": form, "target": target.name, "form": chosen, "reason": reason,
            "cores": [core.to_dict() for core in findings.cores],
            "problems": findings.problems,
            "left_as_exported": list(findings.problems) if form == "auto" else [],
            "other_softmaxes": findings.others}
    if chosen == "keep":
        info["opset"] = opset_of(model)
        return model, info
    if form != "auto":
        try:
            return _rewrite(model, chosen, source, info, target)
        except OcrDeployError:
            raise
        except Exception as exc:
            raise ConversionError(source, f"the '{chosen}' attention rewrite to succeed",
                                  f"{type(exc).__name__}: {exc}"[:300],
                                  "use --attention auto or keep, and report the model") from exc
    try:
        return _rewrite(model, chosen, source, info, target)
    except Exception as exc:  # auto never fails an export: keep the graph as exported
        found = exc.found if isinstance(exc, OcrDeployError) else f"{type(exc).__name__}: {exc}"
        info.update(form="keep", reason=f"the '{chosen}' rewrite did not validate "
                    f"({found[:300]}); the graph is left as exported",
                    cores=[core.to_dict() for core in findings.cores])
        info["opset"] = opset_of(model)
        return model, info


def _rewrite(model, chosen: str, source, info: dict, target: GraphTarget
             ) -> tuple[onnx.ModelProto, dict]:
    """Apply ``chosen`` to a copy of ``model`` for ``target``; fills ``info``'s per-core
    changes."""
    model = copy.deepcopy(model)
    name_nodes(model)
    findings = find_attention_cores(model)
    info["cores"] = [core.to_dict() for core in findings.cores]
    if chosen == "decomposed":
        for entry, core in zip(info["cores"], findings.cores, strict=True):
            entry["change"] = to_decomposed(model, core)
    elif chosen == "attention":
        model = _upgrade(model, source)
        upgraded = find_attention_cores(model).cores
        if len(upgraded) != len(findings.cores):
            raise ConversionError(source, f"the {len(findings.cores)} attention core(s) to "
                                  f"survive the conversion to opset {ATTENTION_OPSET}",
                                  f"{len(upgraded)}", "use --attention decomposed")
        for entry, core in zip(info["cores"], upgraded, strict=True):
            entry["change"] = to_attention(model, core, four_d=target.attention_4d)
    remove_dead(model)
    toposort(model)
    _check(model, chosen, source)
    info["opset"] = opset_of(model)
    return model, info


def summary(info: dict) -> str:
    """One line for progress output: the form, the cores and where each scale went."""
    cores = "; ".join(
        f"{c['nodes']['softmax']} (query {c['shapes']['query']}, scale {c['scale']}"
        + (f" -> {c['change']['scale_moved_to']}" if c.get("change") else "") + ")"
        for c in info["cores"]) or "no attention core"
    left = info.get("left_as_exported") or []
    tail = f"; left as exported: {'; '.join(left)}" if left else ""
    return f"attention form '{info['form']}' for {info['target']}: {cores}{tail}"


def _choose(form: str, target: GraphTarget, findings: Findings, source) -> tuple[str, str]:
    if form == "keep":
        return "keep", "requested: the graph is left as exported"
    if form == "auto":
        if not findings.cores:
            left = f" ({len(findings.problems)} softmax(es) that are not cores left as " \
                "exported)" if findings.problems else ""
            return "keep", f"no attention core found: the graph is left as exported{left}"
        return target.forms["attention"]
    if findings.problems:
        raise BadInputError(source, f"unambiguous attention cores ({PATTERN})",
                            "; ".join(findings.problems),
                            "export with --attention keep, or report the model")
    if not findings.cores:
        raise BadInputError(source, f"an OCRNet attention core ({PATTERN})",
                            "no such pattern in the graph",
                            "export with --attention keep (or auto) for a model without one")
    return form, (f"requested (auto would pick '{target.forms['attention'][0]}' for "
                  f"{target.name})")


def _upgrade(model, source):
    try:
        return upgrade_opset(model, ATTENTION_OPSET)
    except Exception as exc:
        raise ConversionError(source, f"the ONNX version converter to reach opset "
                              f"{ATTENTION_OPSET}", f"{type(exc).__name__}: {exc}"[:300],
                              "use --attention decomposed") from exc


def _check(model, form: str, source) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ConversionError(source, f"a valid graph after the '{form}' attention rewrite",
                              f"onnx.checker: {exc}"[:300],
                              "use --attention keep and report the model") from exc
