"""What a backend's graph compiler takes and prefers, for the graph passes that pick a form
per backend (the attention core, the end-to-end graph). Each backend package defines its
own (``Backend.graph_target``, with the reasons for its choices); the passes read the
target's facts and never test which backend it is."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GraphTarget:
    """A backend as graph passes see it.

    ``forms``: step -> (form, why) for each step a pass chooses by itself ("attention",
    "labels", "argmax"). ``float64``: it computes float64 tensors (size tables of dynamic
    images); ``uint16``: it has 16-bit integer tensors (labels beyond 256 classes, else
    int32); ``uint8_layout``: uint8 transposes and gathers are fast there (else the image
    goes to int32 first); ``resize_layout``: the layout its Resize wants (None: any).
    ``uint8_compute``: it computes on uint8 tensors and casts them to and from integer types
    (else uint8 appears only at the graph's input and output, converted through float32);
    ``nonzero_bool``: its NonZero takes a bool mask (else a float one); ``attention_4d``:
    its Attention op wants 4-D Q, K, V (else 3-D with one head is kept).
    """

    name: str
    forms: dict = field(default_factory=dict)
    float64: bool = True
    uint16: bool = True
    uint8_layout: bool = True
    resize_layout: str | None = None
    uint8_compute: bool = True
    nonzero_bool: bool = True
    attention_4d: bool = False


def graph_target(target: GraphTarget | str) -> GraphTarget:
    """``target``, or the graph target of the backend it names (``ocr_deploy.backends``)."""
    if isinstance(target, GraphTarget):
        return target
    from ocr_deploy import backends

    return backends.get(target).graph_target
