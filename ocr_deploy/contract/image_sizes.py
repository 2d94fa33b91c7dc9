"""The image sizes an end-to-end artifact takes: a fixed ``(H, W)`` or a range of them.

One type for every place that reads, checks or reports them: the graph pass that builds the
artifact (``graph.end_to_end``), its metadata (``metadata.end_to_end``: ``image_size`` or
``image_range``), the runtime's size check and the build's verification images.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocr_deploy.errors import BadInputError

MAX_SIDE = 1 << 16  # pixels


@dataclass(frozen=True)
class ImageSizes:
    """The image sizes an end-to-end graph takes: ``(H, W)`` from ``minimum`` to
    ``maximum`` (equal: a fixed size). ``optimum``: the size a range is tuned for (a
    TensorRT optimisation profile's opt; default the maximum)."""

    minimum: tuple[int, int]
    maximum: tuple[int, int]
    optimum: tuple[int, int] | None = None

    @classmethod
    def fixed(cls, height: int, width: int) -> ImageSizes:
        return cls((height, width), (height, width))

    @classmethod
    def from_dict(cls, end_to_end: dict) -> ImageSizes:
        """The sizes an end-to-end contract records (``to_dict``'s form)."""
        fixed = end_to_end.get("image_size")
        if fixed is not None:
            return cls.fixed(*fixed)
        span = end_to_end["image_range"]
        opt = span.get("opt")
        return cls(tuple(span["min"]), tuple(span["max"]), tuple(opt) if opt else None)

    @property
    def is_fixed(self) -> bool:
        return self.minimum == self.maximum

    @property
    def profile(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """``(min, opt, max)`` sizes."""
        return self.minimum, self.optimum or self.maximum, self.maximum

    @property
    def sides(self) -> tuple[int, int]:
        """``(H, W)`` with -1 for a side that varies (a tensor's static shape)."""
        return tuple(low if low == high else -1
                     for low, high in zip(self.minimum, self.maximum, strict=True))

    def contains(self, height: int, width: int) -> bool:
        """Whether the artifact takes an image of ``height x width``."""
        (low_h, low_w), (high_h, high_w) = self.minimum, self.maximum
        return low_h <= height <= high_h and low_w <= width <= high_w

    def clamp(self, height: int, width: int) -> tuple[int, int]:
        """The size it takes nearest to ``height x width`` (each side clamped)."""
        (low_h, low_w), (high_h, high_w) = self.minimum, self.maximum
        return min(max(height, low_h), high_h), min(max(width, low_w), high_w)

    def to_dict(self) -> dict:
        if self.is_fixed:
            return {"image_size": list(self.minimum)}
        low, opt, high = self.profile
        return {"image_range": {"min": list(low), "opt": list(opt), "max": list(high)}}

    def describe(self) -> str:
        """``HxW``, or ``HxW to HxW`` for a range."""
        low, high = ("x".join(map(str, s)) for s in (self.minimum, self.maximum))
        return low if self.is_fixed else f"{low} to {high}"

    def validate(self) -> None:
        sides = [side for size in self.profile for side in size]
        if len(sides) != 6 or not all(isinstance(s, int) and 1 <= s <= MAX_SIDE
                                      for s in sides) \
                or not all(a <= b <= c for a, b, c in zip(*self.profile, strict=True)):
            raise BadInputError(None, f"image sizes HxW with sides 1..{MAX_SIDE} (a range: "
                                "min <= opt <= max per side)", self.describe(),
                                "pass e.g. 1024x2048, or 480x640 to 1080x1920")
