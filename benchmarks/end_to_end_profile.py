"""Where an end-to-end artifact's time goes, by ONNX Runtime's own profiler
(``SessionOptions.enable_profiling``): per step of the graph (the names
``graph.end_to_end`` gives its nodes: ``e2e/horizontal_*``, ``e2e/vertical_*``,
``e2e/boundary_*`` ...; the model's own nodes as ``core``) and per operator type.

    python benchmarks/end_to_end_profile.py ARTIFACT [--runs 10] [--threads 2]
                                            [--images scenes|noise] [--top 25]

Runs ARTIFACT (an ``.onnx`` end-to-end artifact) ``--runs`` times on one uint8 frame of
its size after two warm-up runs and prints the mean microseconds per run of each group.
The profiler's own overhead is in every figure alike; compare the shares, and time the
whole graph with benchmarks/end_to_end.py.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
import models


def step(node: str) -> str:
    """A node's step: ``e2e/horizontal_rows_3`` -> ``horizontal``; core nodes -> ``core``."""
    if not node.startswith("e2e/"):
        return "core"
    return re.split(r"[_/]", node[len("e2e/"):], maxsplit=1)[0]


def profile(path: Path, image: np.ndarray, runs: int, threads: int) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = str(Path(folder) / "e2e")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for _ in range(2 + runs):
            session.run(None, {name: image[None]})
        events = json.loads(Path(session.end_profiling()).read_text())
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    # the first two runs are warm-up: every node appears once per run
    per_node = collections.defaultdict(list)
    for event in nodes:
        per_node[event["name"][:-len("_kernel_time")]].append(event)
    by_step, by_op, total = collections.Counter(), collections.Counter(), 0.0
    for node, calls in per_node.items():
        timed = calls[2:] if len(calls) > 2 else calls
        mean = sum(e["dur"] for e in timed) / max(1, len(timed))
        op = calls[0].get("args", {}).get("op_name", "?")
        by_step[step(node)] += mean
        by_op[f"{step(node)}: {op}"] += mean
        total += mean
    return {"total_us": total, "steps": by_step, "ops": by_op}


def demo_end_to_end(folder: Path) -> Path:
    """The demo export wrapped end to end for 96x128 frames (no build): --smoke's input."""
    import onnx

    from ocr_deploy.contract.image_sizes import ImageSizes
    from ocr_deploy.graph.end_to_end import make_end_to_end

    model, _ = make_end_to_end(onnx.load(models.export_demo(folder)),
                               ImageSizes.fixed(96, 128))
    onnx.save(model, folder / "demo_e2e.onnx")
    return folder / "demo_e2e.onnx"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path, nargs="?",
                        help="an end-to-end .onnx artifact (--smoke: the demo's, made here)")
    parser.add_argument("--runs", type=int, default=10, help="profiled runs (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    parser.add_argument("--images", choices=("scenes", "noise"), default="scenes",
                        help="the frame: a synthetic scene or uniform noise (default scenes)")
    parser.add_argument("--top", type=int, default=25, help="operator rows (default 25)")
    harness.add_smoke(parser)
    args = harness.shrink(parser.parse_args(), runs=1, top=5)
    if args.artifact is None:
        if not args.smoke:
            parser.error("ARTIFACT is required (unless --smoke)")
        args.artifact = demo_end_to_end(Path(tempfile.mkdtemp(prefix="e2e_profile_smoke-")))

    from end_to_end import camera_images

    from ocr_deploy.contract.metadata import read_metadata

    meta = read_metadata(args.artifact)
    if not meta.end_to_end:
        raise SystemExit(f"{args.artifact}: not an end-to-end artifact")
    size = meta.image_sizes()[1]
    image = camera_images(args.images, 1, size)[0]
    if meta.end_to_end["color_order"] == "BGR":
        image = np.ascontiguousarray(image[..., ::-1])
    found = profile(args.artifact, image, args.runs, args.threads)
    total = found["total_us"]
    print(f"{args.artifact.name}: {size[0]}x{size[1]} {args.images}, {args.threads} threads, "
          f"{args.runs} runs, load {os.getloadavg()[0]:.2f}: {total / 1000:.1f} ms of kernels "
          "per run")
    for title, table, rows in (("step", found["steps"], None), ("operator", found["ops"],
                                                                 args.top)):
        print(f"  by {title}:")
        for key, us in table.most_common(rows):
            print(f"    {key:40s} {us / 1000:8.2f} ms  {us / total:6.1%}")


if __name__ == "__main__":
    main()
