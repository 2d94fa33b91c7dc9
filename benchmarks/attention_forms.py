"""The attention core's forms on ONNX Runtime CPU: alone, inside a whole OCRNet, and against
the core's memory floor on this machine.

- Core alone: ``build_core_model`` graphs (K=19 keys, D=256, batch 1) at each feature map,
  in the forms ``exported`` (as tf2onnx writes it), ``decomposed`` (scale folded away),
  ``decomposed_mul_q`` (scale as a Mul on Q) and ``attention`` (opset-23 op).
- Whole model: a Cityscapes-scale OCRNet (``OCRNetConfig.cityscapes()``, random weights)
  exported with ``export_model`` at each input size, then ``keep`` / ``decomposed`` /
  ``attention`` via ``apply_attention_form``; total time, and the core's own kernels inside
  the model from ONNX Runtime's profiler.
- Floor: the bytes the core must move (read Q, K and V once, write the output once; the
  [N,K] scores never leave the chip in a fused kernel) over the best measured copy
  bandwidth (``np.copyto`` of a large array, read + write counted).

Forms run interleaved, round by round, so that load from other processes hits them alike;
figures are medians. Progress goes to stderr; results to benchmarks/results/.

    python benchmarks/attention_forms.py [--json] [--models 512x1024,1024x2048]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ocr_deploy.contract.metadata import INPUT_NAME

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
import models

RESULTS = Path(__file__).resolve().parent / "results"
KEYS, DEPTH = 19, 256
FLOAT = 4  # bytes
MODEL_FORMS = ("keep", "decomposed", "attention")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sizes(text: str) -> list[tuple[int, int]]:
    """``128x256,256x512`` -> [(128, 256), (256, 512)]; an empty string -> []."""
    return [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",") if item]


def summarize(samples: list[tuple[float, float]]) -> dict:
    """Median, spread and minimum of (wall, CPU) timings in seconds, as milliseconds.

    The CPU time (this process's, all threads) is the steadier figure on a shared machine:
    waiting for a core does not count; at one thread it is the latency of an idle machine.
    """
    wall = np.array([w for w, _ in samples]) * 1e3
    cpu = np.array([c for _, c in samples]) * 1e3
    return {"median_ms": round(float(np.median(wall)), 3),
            "p10_ms": round(float(np.percentile(wall, 10)), 3),
            "p90_ms": round(float(np.percentile(wall, 90)), 3),
            "min_ms": round(float(wall.min()), 3),
            "cpu_median_ms": round(float(np.median(cpu)), 3), "runs": len(wall)}


def interleaved(calls: dict, repeats: int, warmup: int = 2) -> dict[str, list[tuple]]:
    """Time each callable ``repeats`` times, one round over all of them at a time.

    Returns (wall seconds, process CPU seconds) per call.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[tuple]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def session(model, threads: int, profile: bool = False):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.enable_profiling = profile
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "attention_forms_profile")
    # no busy-waiting workers: an idle session's spinning threads would steal the cores
    # from the session being timed next (forms are interleaved)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------ memory bandwidth

def copy_seconds(elements: int, threads: int, repeats: int) -> float:
    """Median time of copying ``elements`` float32 values, split over ``threads`` threads."""
    src = np.random.default_rng(0).random(elements, dtype=np.float32)
    dst = np.empty_like(src)
    bounds = np.linspace(0, elements, threads + 1).astype(int)
    parts = [(dst[a:b], src[a:b]) for a, b in itertools.pairwise(bounds)]
    with ThreadPoolExecutor(threads) as pool:
        def copy():
            list(pool.map(lambda part: np.copyto(*part), parts))

        samples = interleaved({"copy": copy}, repeats)
    return statistics.median(wall for wall, _ in samples["copy"])


def bandwidth(threads: int, repeats: int, mib: int = 512) -> dict:
    """Copy bandwidth (read + write bytes per second) of a large array, 1 and N threads."""
    elements = mib * 2**20 // FLOAT
    result = {"array_mib": mib, "counted": "read + write bytes of np.copyto"}
    for count in sorted({1, threads}):
        seconds = copy_seconds(elements, count, repeats)
        result[f"gbps_{count}_threads"] = round(2 * elements * FLOAT / seconds / 1e9, 2)
    result["best_gbps"] = max(v for k, v in result.items() if k.startswith("gbps_"))
    return result


# ------------------------------------------------------------------ the core alone

def core_bytes(queries: int) -> int:
    """Read Q [N,D], K and V [K,D] once; write the output [N,D] once (float32)."""
    return FLOAT * (2 * queries * DEPTH + 2 * KEYS * DEPTH)


def bench_core(height: int, width: int, args, gbps: float) -> dict:
    from ocr_deploy.graph.core_model import CORE_FORMS, build_core_model

    queries = height * width
    rng = np.random.default_rng(0)
    feeds = {"query": rng.standard_normal((1, queries, DEPTH), dtype=np.float32),
             "key": rng.standard_normal((1, KEYS, DEPTH), dtype=np.float32),
             "value": rng.standard_normal((1, KEYS, DEPTH), dtype=np.float32)}
    scaled = {**feeds, "query": feeds["query"] * np.float32(DEPTH ** -0.5)}
    fed = {form: scaled if form == "decomposed" else feeds for form in CORE_FORMS}
    moved = core_bytes(queries)
    floor_ms = moved / (gbps * 1e9) * 1e3
    result = {"feature_map": f"{height}x{width}", "queries": queries, "keys": KEYS,
              "depth": DEPTH, "bytes_moved": moved, "floor_ms": round(floor_ms, 3),
              "threads": {}}
    for threads in args.core_threads:
        log(f"core alone, feature map {height}x{width} (N={queries}, K={KEYS}, D={DEPTH}), "
            f"{threads} thread(s) ...")
        sessions = {form: session(build_core_model(form, KEYS, DEPTH), threads)
                    for form in CORE_FORMS}
        outputs = {form: s.run(None, fed[form])[0] for form, s in sessions.items()}
        times = interleaved({form: (lambda s=s, f=fed[form]: s.run(None, f))
                             for form, s in sessions.items()}, args.core_repeats)
        forms = {}
        for form in CORE_FORMS:
            stats = summarize(times[form])
            stats["pct_of_floor"] = round(100 * floor_ms / stats["median_ms"], 1)
            stats["max_abs_diff_vs_exported"] = float(
                np.abs(outputs[form] - outputs["exported"]).max())
            forms[form] = stats
            log(f"  {form:<17} median {stats['median_ms']:8.2f} ms (CPU "
                f"{stats['cpu_median_ms']:8.2f} ms), {stats['pct_of_floor']:5.1f}% of the "
                f"{floor_ms:.2f} ms floor")
        copy_ms = copy_seconds(queries * DEPTH, threads, args.core_repeats) * 1e3
        result["threads"][threads] = {"same_size_copy_ms": round(copy_ms, 3), "forms": forms}
    return result


# ------------------------------------------------------------------ the whole model

def core_node_names(info: dict) -> list[str]:
    """Names of the nodes that make up the core in a rewritten model (for the profiler)."""
    names = []
    for core in info["cores"]:
        names += [n for n in core["nodes"].values() if n]
        names += core.get("change", {}).get("new_nodes", [])
    return names


def core_kernel_ms(profile_path: str, names: list[str], skip: int) -> float:
    """Median over runs (the first ``skip`` left out) of the summed kernel time of the
    core's nodes, fused ones included, from an ONNX Runtime profile."""
    events = json.loads(Path(profile_path).read_text())
    Path(profile_path).unlink()
    runs = [(e["ts"], e["ts"] + e["dur"]) for e in events
            if e.get("cat") == "Session" and e.get("name") == "model_run"][skip:]
    totals = [0.0] * len(runs)
    for event in events:
        name = event.get("name", "")
        node = name.removesuffix("_kernel_time")
        if event.get("cat") != "Node" or node == name or \
                not any(node == n or node.startswith(n + "/") for n in names):
            continue
        for i, (begin, end) in enumerate(runs):
            if begin <= event["ts"] <= end:
                totals[i] += event["dur"]
    return round(statistics.median(totals) / 1e3, 3) if totals else float("nan")


def bench_model(height: int, width: int, args, folder: Path) -> dict:
    import onnx

    from ocr_deploy.graph.attention import apply_attention_form

    log(f"whole model {height}x{width}: building and exporting (export_model) ...")
    start = time.perf_counter()
    exported = onnx.load(models.export_cityscapes(folder, height, width, parity_samples=1))
    log(f"  exported in {time.perf_counter() - start:.0f} s")
    image = np.random.default_rng(0).standard_normal((1, height, width, 3), dtype=np.float32)
    sessions, infos = {}, {}
    for form in MODEL_FORMS:
        model, infos[form] = apply_attention_form(exported, form)
        sessions[form] = session(model, args.threads, profile=True)
    outputs = {form: s.run(None, {INPUT_NAME: image})[0] for form, s in sessions.items()}
    log(f"  timing {', '.join(MODEL_FORMS)} x {args.model_repeats} (interleaved) ...")
    times = interleaved({form: (lambda s=s: s.run(None, {INPUT_NAME: image}))
                         for form, s in sessions.items()}, args.model_repeats, warmup=1)
    reference = outputs["keep"]
    forms = {}
    for form, s in sessions.items():
        stats = summarize(times[form])
        stats["core_kernels_ms"] = core_kernel_ms(  # skip the parity run and the warm-up
            s.end_profiling(), core_node_names(infos[form]), skip=2)
        diff = np.abs(outputs[form] - reference)
        stats["max_rel_err_vs_keep"] = float(diff.max() / np.abs(reference).max())
        stats["argmax_agreement_vs_keep"] = float(
            (outputs[form].argmax(-1) == reference.argmax(-1)).mean())
        change = infos[form]["cores"][0].get("change", {})
        stats["scale_moved_to"] = change.get("scale_moved_to")
        forms[form] = stats
        log(f"  {form:<11} median {stats['median_ms']:9.1f} ms, core kernels "
            f"{stats['core_kernels_ms']:.2f} ms")
    return {"input": f"{height}x{width}", "feature_map": f"{height // 4}x{width // 4}",
            "forms": forms}


# ------------------------------------------------------------------ main

def machine() -> dict:
    import onnxruntime

    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}


def table(results: dict) -> str:
    lines = [f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
             f"{results['settings']['threads']} threads; copy bandwidth "
             f"{results['bandwidth']['best_gbps']} GB/s"]
    for core in results["core"]:
        lines.append(f"core alone {core['feature_map']} (N={core['queries']}): floor "
                     f"{core['floor_ms']} ms ({core['bytes_moved'] / 2**20:.1f} MiB moved)")
        for threads, entry in core["threads"].items():
            lines.append(f"  {threads} thread(s); a same-size copy takes "
                         f"{entry['same_size_copy_ms']} ms")
            for form, s in entry["forms"].items():
                lines.append(f"    {form:<17}{s['median_ms']:>9.2f} ms  (min {s['min_ms']:.2f}, "
                             f"p10 {s['p10_ms']:.2f}, p90 {s['p90_ms']:.2f}; CPU "
                             f"{s['cpu_median_ms']:.2f})"
                             f"  {s['pct_of_floor']:>5.1f}% of floor")
    for model in results["model"]:
        lines.append(f"whole model {model['input']} (feature map {model['feature_map']})")
        for form, s in model["forms"].items():
            lines.append(f"  {form:<11}{s['median_ms']:>10.1f} ms  (min {s['min_ms']:.1f}, "
                         f"p10 {s['p10_ms']:.1f}, "
                         f"p90 {s['p90_ms']:.1f}; CPU {s['cpu_median_ms']:.1f})  core kernels "
                         f"{s['core_kernels_ms']:.2f} ms"
                         f"  argmax {100 * s['argmax_agreement_vs_keep']:.3f}%")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feature-maps", type=sizes, default=sizes("128x256,256x512"),
                        help="core-alone feature maps HxW, comma-separated")
    parser.add_argument("--models", type=sizes, default=sizes("512x1024,1024x2048"),
                        help="whole-model input sizes HxW, comma-separated ('' for none)")
    parser.add_argument("--core-repeats", type=int, default=40)
    parser.add_argument("--model-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="ONNX Runtime intra-op threads for the whole model (all cores)")
    parser.add_argument("--core-threads", type=lambda t: [int(v) for v in t.split(",")],
                        default=sorted({1, os.cpu_count()}),
                        help="thread counts for the core alone, comma-separated")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    harness.add_smoke(parser)
    args = harness.shrink(parser.parse_args(), feature_maps=[(16, 32)], models=[(64, 128)],
                          core_repeats=1, model_repeats=1, core_threads=[1])

    results = {"machine": machine(),
               "settings": {"threads": args.threads, "core_threads": args.core_threads,
                            "core_repeats": args.core_repeats,
                            "model_repeats": args.model_repeats, "keys": KEYS,
                            "depth": DEPTH, "batch": 1},
               "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    log("memory bandwidth (np.copyto, 512 MiB) ...")
    results["bandwidth"] = bandwidth(args.threads, repeats=1 if args.smoke else 10,
                                     mib=8 if args.smoke else 512)
    log(f"  {results['bandwidth']}")
    gbps = results["bandwidth"]["best_gbps"]
    results["core"] = [bench_core(h, w, args, gbps) for h, w in args.feature_maps]
    with tempfile.TemporaryDirectory() as folder:
        results["model"] = [bench_model(h, w, args, Path(folder)) for h, w in args.models]
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"attention_forms-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {path}")
    print(json.dumps(results, indent=2) if args.json else table(results))


if __name__ == "__main__":
    main()
