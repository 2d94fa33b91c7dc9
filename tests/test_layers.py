"""The package's layers (docs/architecture.md): every import in ``ocr_deploy/`` goes to its
own layer or one below, so no import runs back up and no two layers import each other. The
table here is the page's; a module that moves, or a new one, is placed in it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ocr_deploy"

# bottom to top; a module or package of ocr_deploy/ by its first name
LAYERS = [
    ("foundations", {"errors", "files", "pairs", "images", "metrics", "warning_channel",
                     "memory_budget", "progress", "renamed_flags", "cuda", "onnxruntime_env",
                     "pbtxt", "sidecar", "model_card", "tf_env", "cli_support"}),
    ("contract", {"contract"}),
    ("model", {"model"}),
    ("graph", {"graph"}),
    ("precision", {"precision"}),
    ("backends", {"backends"}),
    ("runtime", {"runtime"}),
    ("verification", {"verification"}),
    ("pipelines", {"export", "builder"}),
    ("consumers", {"packaging", "serving", "bench", "capi_bridge"}),
    ("demo", {"demo"}),
]
LEVEL = {name: level for level, (_, names) in enumerate(LAYERS) for name in names}


def _imports() -> list[tuple[str, str, str]]:
    """(importing module's first name, imported module's first name, where) for every
    import of ``ocr_deploy`` inside the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if source == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "ocr_deploy" and len(parts) > 1:
                    found.append((source, parts[1], f"{path.relative_to(PACKAGE.parent)}:"
                                                    f"{node.lineno} imports {name}"))
    return found


def test_every_module_has_a_layer():
    modules = {p.relative_to(PACKAGE).parts[0].removesuffix(".py")
               for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert modules - {"__init__"} - set(LEVEL) == set(), \
        "place these in tests/test_layers.py LAYERS and docs/architecture.md"


def test_no_import_runs_back_up():
    upward = [where for source, target, where in _imports()
              if source in LEVEL and target in LEVEL and LEVEL[target] > LEVEL[source]]
    assert upward == []
