"""Decide which model output is the segmentation output (and which is auxiliary)."""

from __future__ import annotations

from dataclasses import dataclass

from ocr_deploy.errors import BadInputError


@dataclass
class OutputChoice:
    """The chosen logits output, the auxiliary ones, and why."""

    logits: str
    aux: list[str]
    num_classes: int
    stride: int  # input size / logits size (1 = full resolution)
    reason: str


def choose_outputs(path, input_hw: tuple[int, int], output_shapes: dict[str, tuple],
                   requested: str | None = None) -> OutputChoice:
    """Pick the full-resolution logits ``[B,H,W,K]`` among ``output_shapes``.

    Rules: a requested name wins; otherwise the rank-4 output at the input's resolution
    (several: the one not named like ``aux``, else the last); with none at full
    resolution, the highest-resolution rank-4 output (upsampling happens outside).
    """
    maps = {n: s for n, s in output_shapes.items() if len(s) == 4 and s[1] and s[2] and s[3]}
    if requested is not None:
        if requested not in output_shapes:
            raise BadInputError(path, f"an output named '{requested}'",
                                f"outputs {_describe(output_shapes)}",
                                "pass one of these names to --output")
        if requested not in maps:
            raise BadInputError(path, f"output '{requested}' shaped [B,H,W,classes]",
                                f"shape {_shape(output_shapes[requested])}",
                                "choose a segmentation output")
        chosen, reason = requested, "requested with --output"
    elif not maps:
        label_maps = [n for n, shape in output_shapes.items() if len(shape) == 3]
        action = (f"export the model without its final argmax ('{label_maps[0]}' looks like "
                  "a label map [B,H,W]); ocr-export adds one with --argmax") if label_maps \
            else "export a segmentation model, not a classifier"
        raise BadInputError(path, "a segmentation model (an output shaped [B,H,W,classes])",
                            f"outputs {_describe(output_shapes)}", action)
    else:
        chosen, reason = _best(maps, input_hw)
    shape = maps[chosen]
    stride = max(1, round(input_hw[0] / shape[1]))
    aux = [n for n, s in maps.items() if n != chosen and s[3] == shape[3]]
    return OutputChoice(chosen, aux, int(shape[3]), stride, reason)


def _best(maps: dict[str, tuple], input_hw: tuple[int, int]) -> tuple[str, str]:
    full = [n for n, s in maps.items() if tuple(s[1:3]) == tuple(input_hw)]
    pool = full or [n for n, s in maps.items()
                    if s[1] * s[2] == max(t[1] * t[2] for t in maps.values())]
    plain = [n for n in pool if "aux" not in n.lower()]
    chosen = (plain or pool)[-1]
    if full:
        reason = "the full-resolution output" if len(full) == 1 else \
            f"the full-resolution output among {', '.join(full)}"
    else:
        reason = (f"no output at the input resolution {input_hw[0]}x{input_hw[1]}: took the "
                  "highest-resolution one; upsample its logits outside the model")
    return chosen, reason


def _shape(shape: tuple) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def _describe(shapes: dict[str, tuple]) -> str:
    return ", ".join(f"{n} {_shape(s)}" for n, s in shapes.items())
