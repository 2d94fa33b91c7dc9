"""The attention core's forms on an NVIDIA GPU: does TensorRT fuse it, and how fast is it?

NOT RUN YET. Written on machines without a GPU, against the documented TensorRT 10/11
Python API (Builder, create_network, OnnxParser, optimization profiles,
build_serialized_network, IEngineInspector) and cuda-python's runtime bindings; expect
small fixes on its first run.

What it does depends on what it finds:

- TensorRT, cuda-python and a GPU: one engine per core form (``exported``,
  ``decomposed``, ``decomposed_mul_q``, ``attention`` from ``build_core_model``, plus
  ``decomposed_bnsh``: the same MatMul-Softmax-MatMul on 4-D [B,1,N,D] tensors, the layout
  TensorRT's attention fusion documents), per dtype and feature map, with a dynamic-batch
  profile. For each engine: the layer information (``ProfilingVerbosity.DETAILED``, JSON)
  tells whether the core's MatMul/Softmax/MatMul (or Attention) nodes landed in ONE engine
  layer and with which tactic (a single Myelin layer can still launch several kernels:
  ``nsys profile`` shows kernels); CUDA-event timing; the error against a NumPy reference;
  and the core's floor (bytes it must move over the measured device-to-device copy
  bandwidth). ``--model X.onnx`` does the same for an exported OCRNet in each form.
- A GPU without TensorRT: PyTorch (``scaled_dot_product_attention``, each backend, against
  matmul-softmax-matmul) or CuPy (matmul-softmax-matmul), with the same floor: what the GPU
  can do, not what TensorRT does.
- Neither: says what it needs and exits 0.

    python benchmarks/attention_gpu.py [--json] [--dtypes fp16,fp32] [--model X.onnx]
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ocr_deploy import cuda

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

RESULTS = Path(__file__).resolve().parent / "results"
KEYS, DEPTH = 19, 256
SCALE = DEPTH ** -0.5
DTYPES = {"fp16": np.float16, "fp32": np.float32}
COPY_BYTES = 1 << 30
CORE_OPS = ("MatMul", "Softmax", "Attention")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def optional(name: str):
    """The module, or None when it is not installed (or fails to import)."""
    try:
        return importlib.import_module(name)
    except Exception:
        return None


def gpu_name(torch, cupy) -> str | None:
    """The first GPU's name, from whichever library is there; None without a GPU."""
    from ocr_deploy.cuda import device_info
    from ocr_deploy.errors import OcrDeployError

    try:
        return device_info(0)["gpu_name"]
    except OcrDeployError:  # cuda-python missing, or no usable GPU through it
        pass
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    if cupy is not None:
        try:
            return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        except Exception:
            pass
    if shutil.which("nvidia-smi"):
        found = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                               capture_output=True, text=True, check=False)
        if found.returncode == 0 and found.stdout.strip():
            return found.stdout.strip().splitlines()[0]
    return None


# ------------------------------------------------------------------ inputs and reference

def core_inputs(queries: int, dtype, batch: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"query": rng.standard_normal((batch, queries, DEPTH)).astype(dtype),
            "key": rng.standard_normal((batch, KEYS, DEPTH)).astype(dtype),
            "value": rng.standard_normal((batch, KEYS, DEPTH)).astype(dtype)}


def reference(feeds: dict[str, np.ndarray]) -> np.ndarray:
    """softmax(D^-0.5 Q K^T) V in float64."""
    q, k, v = (feeds[n].astype(np.float64) for n in ("query", "key", "value"))
    scores = q @ k.transpose(0, 2, 1) * SCALE
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)) @ v


def core_floor_bytes(queries: int, itemsize: int) -> int:
    """Read Q, K, V once and write the output once; the scores stay on chip."""
    return itemsize * (2 * queries * DEPTH + 2 * KEYS * DEPTH)


def bnsh_model(dtype):
    """MatMul-Softmax-MatMul on [B,1,S,D] tensors (scale folded: feed scale * query)."""
    from onnx import TensorProto, helper

    from ocr_deploy.graph.core_model import EXPORT_OPSET

    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [helper.make_node("Unsqueeze", [n, "axes"], [f"{n}4"], name=f"{n}_4d")
             for n in ("query", "key", "value")]
    nodes += [helper.make_node("Transpose", ["key4"], ["key_t"], perm=[0, 1, 3, 2], name="kt"),
              helper.make_node("MatMul", ["query4", "key_t"], ["scores"], name="qk"),
              helper.make_node("Softmax", ["scores"], ["weights"], axis=-1, name="softmax"),
              helper.make_node("MatMul", ["weights", "value4"], ["context4"], name="pv"),
              helper.make_node("Squeeze", ["context4", "axes"], ["context"], name="out_3d")]
    io = [helper.make_tensor_value_info(n, elem, ["batch", s, DEPTH])
          for n, s in (("query", "queries"), ("key", KEYS), ("value", KEYS))]
    out = helper.make_tensor_value_info("context", elem, ["batch", "queries", DEPTH])
    graph = helper.make_graph(nodes, "attention_core_bnsh", io, [out], [axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", EXPORT_OPSET)])
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    return model


def core_models(dtype) -> dict:
    from ocr_deploy.graph.core_model import CORE_FORMS, build_core_model

    models = {form: build_core_model(form, KEYS, DEPTH, dtype=dtype, target="tensorrt")
              for form in CORE_FORMS}
    models["decomposed_bnsh"] = bnsh_model(dtype)
    return models


def prescaled(form: str) -> bool:
    """Forms whose query weights absorbed the scale: they are fed ``scale * query``."""
    return form in ("decomposed", "decomposed_bnsh")


# ------------------------------------------------------------------ TensorRT

class Buffers:
    """Device buffers for an engine's I/O tensors (the project's CUDA helpers)."""

    def __init__(self, sizes: dict[str, int]):
        self.buffers = {name: cuda.DeviceBuffer() for name in sizes}
        for name, size in sizes.items():
            self.buffers[name].ensure(max(size, 1))
        self.pointers = {name: buffer.ptr for name, buffer in self.buffers.items()}

    def upload(self, name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        kind = cuda.runtime_module().cudaMemcpyKind.cudaMemcpyHostToDevice
        cuda.cuda_call("cudaMemcpy", self.pointers[name], array.ctypes.data, array.nbytes, kind)

    def download(self, name: str, array: np.ndarray) -> np.ndarray:
        kind = cuda.runtime_module().cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda.cuda_call("cudaMemcpy", array.ctypes.data, self.pointers[name], array.nbytes, kind)
        return array

    def free(self) -> None:
        for buffer in self.buffers.values():
            buffer.free()
        self.buffers, self.pointers = {}, {}


def event_ms(stream: int, work, iterations: int, repeats: int) -> dict:
    """Median (over ``repeats``) per-iteration milliseconds of ``work`` on ``stream``."""
    start, end = cuda.cuda_call("cudaEventCreate"), cuda.cuda_call("cudaEventCreate")
    for _ in range(3):
        work()
    cuda.synchronize_stream(stream)
    samples = []
    for _ in range(repeats):
        cuda.cuda_call("cudaEventRecord", start, stream)
        for _ in range(iterations):
            work()
        cuda.cuda_call("cudaEventRecord", end, stream)
        cuda.cuda_call("cudaEventSynchronize", end)
        samples.append(cuda.cuda_call("cudaEventElapsedTime", start, end) / iterations)
    cuda.cuda_call("cudaEventDestroy", start)
    cuda.cuda_call("cudaEventDestroy", end)
    return {"median_ms": round(float(np.median(samples)), 4),
            "min_ms": round(float(np.min(samples)), 4), "repeats": repeats,
            "iterations": iterations}


def copy_bandwidth(stream: int, repeats: int) -> dict:
    """Device-to-device copy bandwidth, read + write bytes counted."""
    src, dst = cuda.DeviceBuffer(), cuda.DeviceBuffer()
    src.ensure(COPY_BYTES)
    dst.ensure(COPY_BYTES)
    kind = cuda.runtime_module().cudaMemcpyKind.cudaMemcpyDeviceToDevice
    try:
        timing = event_ms(stream, lambda: cuda.cuda_call(
            "cudaMemcpyAsync", dst.ptr, src.ptr, COPY_BYTES, kind, stream), 5, repeats)
    finally:
        src.free()
        dst.free()
    return {"copy_mib": COPY_BYTES >> 20, "counted": "read + write bytes",
            "gbps": round(2 * COPY_BYTES / (timing["median_ms"] / 1e3) / 1e9, 1)}


def build_engine(trt, logger, onnx_bytes: bytes, shapes: dict[str, tuple], max_batch: int):
    """(engine, None) or (None, why), built by the project's TensorRT helper. ``shapes``:
    each input's shape at batch 1; the profile spans batch 1 to ``max_batch``."""
    from ocr_deploy.backends.tensorrt.engine import EngineSpec
    from ocr_deploy.backends.tensorrt.engine import build_engine as build_plan
    from ocr_deploy.errors import OcrDeployError

    profiles = {name: ((1, *shape[1:]), (1, *shape[1:]), (max_batch, *shape[1:]))
                for name, shape in shapes.items()}
    try:
        built = build_plan(EngineSpec(onnx_bytes, profiles, workspace_mib=4096))
    except OcrDeployError as exc:
        return None, exc.one_line()
    return trt.Runtime(logger).deserialize_cuda_engine(built.plan), None


def engine_layers(trt, engine, core_nodes: list[str]) -> dict:
    """Which engine layers hold the core's nodes, and their types and tactics."""
    inspector = engine.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    rows = []
    for layer in info.get("Layers", []):
        if isinstance(layer, str):  # built without DETAILED verbosity: names only
            layer = {"Name": layer}
        text = f"{layer.get('Name', '')} {layer.get('Metadata', '')}"
        covers = [node for node in core_nodes  # "MatMul" must not match "MatMul_1"
                  if re.search(re.escape(node) + r"(?!\w)", text)]
        rows.append({"name": layer.get("Name", ""), "type": layer.get("LayerType", ""),
                     "tactic": layer.get("TacticName", layer.get("TacticValue", "")),
                     "covers": covers})
    holding = [row for row in rows if row["covers"]]
    # a node named by no layer was fused into one (a Myelin layer names its first and last)
    return {"engine_layers": len(rows), "core_nodes": core_nodes, "core_layers": holding,
            "core_in_one_layer": len(holding) == 1}


def run_engine(trt, stream, engine, feeds: dict[str, np.ndarray], args) -> dict:
    """Set shapes, upload ``feeds``, time ``execute_async_v3``; returns timing and outputs."""
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    for name in inputs:
        context.set_input_shape(name, feeds[name].shape)
    shapes = {n: tuple(context.get_tensor_shape(n)) for n in names}
    dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
    buffers = Buffers({n: int(np.prod(shapes[n])) * dtypes[n].itemsize for n in names})
    try:
        for name in inputs:
            buffers.upload(name, feeds[name].astype(dtypes[name]))
        for name in names:
            context.set_tensor_address(name, int(buffers.pointers[name]))

        def execute():
            if not context.execute_async_v3(stream_handle=stream):
                raise RuntimeError("execute_async_v3 returned False")

        timing = event_ms(stream, execute, args.iterations, args.repeats)
        cuda.synchronize_stream(stream)
        outputs = {n: buffers.download(n, np.empty(shapes[n], dtypes[n]))
                   for n in names if n not in inputs}
    finally:
        buffers.free()
    return {"timing": timing, "outputs": outputs}


def bench_tensorrt(trt, args) -> dict:
    from ocr_deploy.backends.tensorrt.library import shared_logger

    logger = shared_logger()  # TensorRT's logger is global: the one the builder uses too
    own_stream = cuda.Stream()
    stream = own_stream.handle
    results = {"tensorrt": trt.__version__, "bandwidth": copy_bandwidth(stream, 10),
               "core": []}
    gbps = results["bandwidth"]["gbps"]
    log(f"device-to-device copy: {gbps} GB/s")
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        for height, width in args.feature_maps:
            queries = height * width
            feeds = core_inputs(queries, dtype)
            expected = reference(feeds)
            floor_ms = core_floor_bytes(queries, np.dtype(dtype).itemsize) / (gbps * 1e9) * 1e3
            entry = {"dtype": dtype_name, "feature_map": f"{height}x{width}",
                     "queries": queries, "floor_ms": round(floor_ms, 4), "forms": {}}
            for form, model in core_models(dtype).items():
                log(f"TensorRT {dtype_name} {height}x{width} {form}: building ...")
                entry["forms"][form] = core_engine_result(
                    trt, stream, logger, model, form, feeds, expected, floor_ms, args)
            results["core"].append(entry)
    if args.model:
        results["model"] = bench_model_tensorrt(trt, stream, logger, args)
    own_stream.destroy()
    return results


def core_engine_result(trt, stream, logger, model, form, feeds, expected, floor_ms,
                       args) -> dict:
    """Build, inspect, run and check one core form."""
    core_nodes = [n.name for n in model.graph.node if n.op_type in CORE_OPS]
    start = time.perf_counter()
    engine, why = build_engine(trt, logger, model.SerializeToString(),
                               {n: a.shape for n, a in feeds.items()}, args.max_batch)
    if engine is None:
        log(f"  not built: {why}")
        return {"built": False, "why": why}
    result = {"built": True, "build_s": round(time.perf_counter() - start, 1),
              **engine_layers(trt, engine, core_nodes)}
    fed = dict(feeds)
    if prescaled(form):
        fed["query"] = (feeds["query"].astype(np.float32) * SCALE).astype(
            feeds["query"].dtype)
    run = run_engine(trt, stream, engine, fed, args)
    output = run["outputs"]["context"].astype(np.float64)
    result["timing"] = run["timing"]
    result["pct_of_floor"] = round(100 * floor_ms / run["timing"]["median_ms"], 1)
    result["max_rel_err"] = float(np.abs(output - expected).max() / np.abs(expected).max())
    log(f"  {run['timing']['median_ms']:.3f} ms ({result['pct_of_floor']}% of floor), "
        f"core in one layer: {result['core_in_one_layer']}, "
        f"layers: {[(r['type'], r['tactic']) for r in result['core_layers']]}")
    return result


def bench_model_tensorrt(trt, stream, logger, args) -> dict:
    """An exported OCRNet (``--model``) in each form: fusion and time at batch 1."""
    import onnx

    from ocr_deploy.graph.attention import apply_attention_form

    exported = onnx.load(args.model)
    dims = [d.dim_value for d in exported.graph.input[0].type.tensor_type.shape.dim]
    image = np.random.default_rng(0).standard_normal((1, *dims[1:])).astype(np.float32)
    results = {"model": str(args.model), "forms": {}}
    for form in ("keep", "decomposed", "attention"):
        model, info = apply_attention_form(exported, form, target="tensorrt",
                                           source=args.model)
        core_nodes = [n for core in info["cores"] for n in core["nodes"].values() if n]
        core_nodes += [n for core in info["cores"] for n in
                       core.get("change", {}).get("new_nodes", [])]
        core_nodes = [n for n in core_nodes if any(
            node.name == n and node.op_type in CORE_OPS for node in model.graph.node)]
        log(f"TensorRT whole model, form {form}: building ...")
        feeds = {exported.graph.input[0].name: image}
        engine, why = build_engine(trt, logger, model.SerializeToString(),
                                   {n: a.shape for n, a in feeds.items()}, args.max_batch)
        if engine is None:
            results["forms"][form] = {"built": False, "why": why}
            continue
        run = run_engine(trt, stream, engine, feeds, args)
        results["forms"][form] = {"built": True, "timing": run["timing"],
                                  **engine_layers(trt, engine, core_nodes)}
        log(f"  {run['timing']['median_ms']:.3f} ms")
    return results


# ------------------------------------------------------------------ no TensorRT

def bench_torch(torch, args) -> dict:
    """The core in PyTorch: SDPA per backend against matmul-softmax-matmul."""
    functional = torch.nn.functional
    attention = optional("torch.nn.attention")
    backends = {name: backend for name, backend in attention.SDPBackend.__members__.items()
                if name not in ("ERROR", "OVERRIDEABLE")} if attention else {}
    device = torch.device("cuda")
    results = {"torch": torch.__version__, "core": []}
    src = torch.empty(COPY_BYTES // 4, device=device)
    dst = torch.empty_like(src)
    copy_ms = torch_ms(torch, lambda: dst.copy_(src), args)["median_ms"]
    gbps = 2 * COPY_BYTES / (copy_ms / 1e3) / 1e9
    results["bandwidth"] = {"copy_mib": COPY_BYTES >> 20, "gbps": round(gbps, 1)}
    for dtype_name in args.dtypes:
        dtype = getattr(torch, {"fp16": "float16", "fp32": "float32"}[dtype_name])
        for height, width in args.feature_maps:
            queries = height * width
            q, k, v = (torch.randn(1, n, DEPTH, device=device, dtype=dtype)
                       for n in (queries, KEYS, KEYS))
            calls = {"matmul_softmax_matmul":
                     lambda q=q, k=k, v=v: torch.softmax((q * SCALE) @ k.transpose(1, 2), -1) @ v}
            for name, backend in backends.items():
                def sdpa(q=q, k=k, v=v, backend=backend):
                    with attention.sdpa_kernel(backend):
                        return functional.scaled_dot_product_attention(
                            q[:, None], k[:, None], v[:, None], scale=SCALE)
                calls[f"sdpa_{name.lower()}"] = sdpa
            floor_ms = core_floor_bytes(queries, q.element_size()) / (gbps * 1e9) * 1e3
            entry = {"dtype": dtype_name, "feature_map": f"{height}x{width}",
                     "floor_ms": round(floor_ms, 4), "forms": {}}
            for name, call in calls.items():
                try:
                    timing = torch_ms(torch, call, args)
                    timing["pct_of_floor"] = round(100 * floor_ms / timing["median_ms"], 1)
                except RuntimeError as exc:  # a backend that does not support this case
                    timing = {"error": str(exc).splitlines()[0][:200]}
                entry["forms"][name] = timing
                log(f"torch {dtype_name} {height}x{width} {name}: {timing}")
            results["core"].append(entry)
    return results


def torch_ms(torch, call, args) -> dict:
    for _ in range(3):
        call()
    torch.cuda.synchronize()
    samples = []
    for _ in range(args.repeats):
        start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record()
        for _ in range(args.iterations):
            call()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / args.iterations)
    return {"median_ms": round(float(np.median(samples)), 4),
            "min_ms": round(float(np.min(samples)), 4)}


def bench_cupy(cupy, args) -> dict:
    """The core in CuPy: matmul-softmax-matmul, and the copy floor."""
    results = {"cupy": cupy.__version__, "core": []}
    src = cupy.empty(COPY_BYTES // 4, cupy.float32)
    dst = cupy.empty_like(src)
    copy_ms = cupy_ms(cupy, lambda: cupy.copyto(dst, src), args)["median_ms"]
    gbps = 2 * COPY_BYTES / (copy_ms / 1e3) / 1e9
    results["bandwidth"] = {"copy_mib": COPY_BYTES >> 20, "gbps": round(gbps, 1)}
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        for height, width in args.feature_maps:
            queries = height * width
            feeds = {n: cupy.asarray(a) for n, a in core_inputs(queries, dtype).items()}
            q, k, v = feeds["query"] * dtype(SCALE), feeds["key"], feeds["value"]

            def core(q=q, k=k, v=v):
                scores = q @ k.transpose(0, 2, 1)
                weights = cupy.exp(scores - scores.max(-1, keepdims=True))
                return (weights / weights.sum(-1, keepdims=True)) @ v

            floor_ms = core_floor_bytes(queries, np.dtype(dtype).itemsize) / (gbps * 1e9) * 1e3
            timing = cupy_ms(cupy, core, args)
            timing["pct_of_floor"] = round(100 * floor_ms / timing["median_ms"], 1)
            results["core"].append({"dtype": dtype_name, "feature_map": f"{height}x{width}",
                                    "floor_ms": round(floor_ms, 4),
                                    "forms": {"matmul_softmax_matmul": timing}})
            log(f"cupy {dtype_name} {height}x{width}: {timing}")
    return results


def cupy_ms(cupy, call, args) -> dict:
    for _ in range(3):
        call()
    cupy.cuda.Device().synchronize()
    samples = []
    for _ in range(args.repeats):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        for _ in range(args.iterations):
            call()
        end.record()
        end.synchronize()
        samples.append(cupy.cuda.get_elapsed_time(start, end) / args.iterations)
    return {"median_ms": round(float(np.median(samples)), 4),
            "min_ms": round(float(np.min(samples)), 4)}


# ------------------------------------------------------------------ main

def sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",") if item]


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``argv``, default ``sys.argv[1:]``), checked; ``gpu_check.py``
    calls ``bench_torch``/``bench_cupy`` with these."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feature-maps", type=sizes, default=sizes("128x256,256x512"))
    parser.add_argument("--dtypes", type=lambda t: t.split(","), default=["fp16", "fp32"])
    parser.add_argument("--model", type=Path, help="an exported OCRNet ONNX (TensorRT only)")
    parser.add_argument("--max-batch", type=int, default=4, help="the profile's max batch")
    parser.add_argument("--iterations", type=int, default=20, help="runs per timed sample")
    parser.add_argument("--repeats", type=int, default=10, help="timed samples (median)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    harness.add_smoke(parser)
    args = harness.shrink(parser.parse_args(argv), feature_maps=[(16, 32)], dtypes=["fp32"],
                          iterations=1, repeats=1, max_batch=1)
    unknown = set(args.dtypes) - set(DTYPES)
    if unknown:
        parser.error(f"--dtypes: unknown {sorted(unknown)}; use fp16 and/or fp32")
    return args


def main() -> int:
    args = arguments()
    from ocr_deploy.backends.tensorrt.library import availability

    trt_ready, trt_reason = availability()
    torch, cupy = optional("torch"), optional("cupy")
    device = gpu_name(torch, cupy)
    if device is None:
        print("attention_gpu: no NVIDIA GPU found; nothing measured. This benchmark needs an "
              "NVIDIA GPU with TensorRT >= 10 and cuda-python (pip install tensorrt "
              "cuda-python), or, for the GPU floor only, PyTorch or CuPy with CUDA.")
        return 0
    if trt_ready:
        backend, results = "tensorrt", bench_tensorrt(optional("tensorrt"), args)
    elif torch is not None and torch.cuda.is_available():
        backend, results = "torch", bench_torch(torch, args)
    elif cupy is not None:
        backend, results = "cupy", bench_cupy(cupy, args)
    else:
        print(f"attention_gpu: found {device}, but TensorRT is not usable ({trt_reason}) and "
              "there is no PyTorch or CuPy; nothing measured. Install tensorrt and "
              "cuda-python (or torch / cupy) and rerun.")
        return 0
    results = {"device": device, "backend": backend,
               "what": "TensorRT engines" if backend == "tensorrt" else
               "the GPU floor without TensorRT (no TensorRT on this machine)",
               "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), **results}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"attention_gpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"wrote {path}")
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
