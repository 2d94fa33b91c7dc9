"""Bounded load test of the Python-backend model served by Triton on this machine, against the
in-process runtime.

For dynamic batching on and off, the artifact is packaged (``ocr-package --triton``) into a
temporary repository and served with the nvidia-pytriton wheel's ``tritonserver`` (Python
backend, serving environment ``.venv-serve``) on free loopback ports. For each client count
N, N threads each send M requests (one uint8 image per request, gRPC by default) and every
answer is compared with ``Segmenter.predict``: throughput (answers per second), p50 / p99
latency, errors (must be 0), and the server's resident memory (tritonserver + its backend
stubs) before and after. Beside each row, the in-process ``Segmenter.predict`` throughput
with N threads in this process, measured right before and right after each Triton row (the
mean of the two: the machine is noisy), and the ratio Triton / in-process.
Bounded: at most N x M requests per row and --max-seconds per row; 127.0.0.1 only.

    python benchmarks/triton_load.py [ARTIFACT] [--clients 1,4,8] [--requests 40]
        [--image-size HxW] [--protocol grpc|http] [--max-seconds 60] [--instances N]
        [--threads N] [--warmup N] [--json]

ARTIFACT defaults to engines/demo_ocrnet_fp32.onnx (``bash run.sh demo``), else
export/demo_ocrnet.onnx. Results: benchmarks/results/triton_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ocr_deploy.serving.python_model import INPUT_PIXELS, OUTPUT_LABELS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
import harness  # noqa: E402
import models  # noqa: E402

DEFAULT_ARTIFACTS = [ROOT / "engines" / "demo_ocrnet_fp32.onnx",
                     ROOT / "export" / "demo_ocrnet.onnx"]


def group_rss_mib(pgid: int) -> float:
    """Resident memory of every process in the group (the server and its stubs), MiB."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            stat = (status.parent / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[2]) != pgid:
                continue
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1024


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_clients(clients: int, requests: int, max_seconds: float, call) -> dict:
    """``clients`` threads, each calling ``call(client_index)`` up to ``requests`` times
    before the deadline; latencies in ms, errors counted with their first messages."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + max_seconds
    start_barrier = threading.Barrier(clients)

    def worker(index: int) -> None:
        start_barrier.wait()
        for _ in range(requests):
            if time.perf_counter() > deadline:
                return
            began = time.perf_counter()
            try:
                call(index)
                with lock:
                    latencies.append((time.perf_counter() - began) * 1000)
            except Exception as exc:  # counted and reported, never hidden
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    return {"answers": len(latencies), "errors": len(errors), "first_errors": errors[:3],
            "seconds": round(wall, 3), "throughput": round(len(latencies) / wall, 2),
            "p50_ms": round(percentile(latencies, 50), 2),
            "p99_ms": round(percentile(latencies, 99), 2)}


def triton_caller(protocol: str, server, model: str, image: np.ndarray, expected: np.ndarray,
                  clients: int):
    """A per-thread client (each thread its own connection) that checks every answer."""
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    url = server.url(protocol)
    handles = [module.InferenceServerClient(url) for _ in range(clients)]
    batch = image[None]

    def call(index: int) -> None:
        inp = module.InferInput(INPUT_PIXELS, list(batch.shape), "UINT8")
        inp.set_data_from_numpy(batch)
        labels = handles[index].infer(model, [inp]).as_numpy(OUTPUT_LABELS)
        if not np.array_equal(labels[0], expected):
            raise AssertionError("label map differs from Segmenter.predict")

    def close() -> None:
        for handle in handles:
            handle.close()

    return call, close


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", nargs="?", type=Path, default=None,
                        help="artifact to serve (default: the demo's fp32 build or export, "
                        "else the demo exported here)")
    parser.add_argument("--clients", default="1,4,8",
                        help="concurrent clients per row, comma-separated (default 1,4,8)")
    parser.add_argument("--requests", type=int, default=40,
                        help="requests per client per row (default 40)")
    parser.add_argument("--image-size", default=None,
                        help="HxW of the request images (default: the model's input size)")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc",
                        help="client protocol (default grpc)")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="time bound per row, seconds (default 60)")
    parser.add_argument("--queue-delay-us", type=int, default=2000,
                        help="dynamic batcher's max queue delay, µs (default 2000)")
    parser.add_argument("--instances", type=int, default=1,
                        help="instances of the Python-backend model (default 1)")
    parser.add_argument("--threads", type=int, default=0,
                        help="ONNX Runtime threads per instance (default 0: its choice)")
    parser.add_argument("--warmup", type=int, default=10,
                        help="warm-up requests per client, at the largest concurrency, before "
                        "the rows (default 10)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    harness.add_smoke(parser)
    args = harness.shrink(parser.parse_args(), clients="1", requests=2, warmup=1,
                          max_seconds=30.0)

    from ocr_deploy.packaging.artifact_info import read_artifact
    from ocr_deploy.packaging.triton_repo import TritonOptions, write_triton_repository
    from ocr_deploy.runtime import Segmenter
    from ocr_deploy.serving.environment import ensure_env
    from ocr_deploy.serving.server import Ports, TritonServer, free_ports

    artifact = args.artifact or next((p for p in DEFAULT_ARTIFACTS if p.is_file()), None)
    if artifact is None:  # a fresh clone: the demo export, as `bash run.sh demo` makes it
        print("no artifact given or in engines/, export/: exporting the demo model ...",
              file=sys.stderr)
        artifact = models.export_demo(Path(tempfile.mkdtemp(prefix="triton_load_demo-")))
    clients_list = [int(c) for c in args.clients.split(",")]
    info = read_artifact(artifact)
    height, width = (int(v) for v in args.image_size.split("x")) if args.image_size else \
        (info.metadata.input_height, info.metadata.input_width)
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    env = ensure_env(log=lambda m: print(m, file=sys.stderr))
    segmenter = Segmenter.open(artifact)
    expected = segmenter.predict(image)

    rows = []
    for batching in (True, False):
        with tempfile.TemporaryDirectory(prefix="triton_load_") as tmp:
            repo = Path(tmp) / "repo"
            write_triton_repository(info, repo, TritonOptions(
                name="seg", dynamic_batching=batching, max_queue_delay_us=args.queue_delay_us,
                python_instances=args.instances, threads=args.threads))
            server = TritonServer(env, repo, Ports(*free_ports(3)), models=["seg_python"],
                                  log=Path(tmp) / "server.log")
            with server:
                call, close = triton_caller(args.protocol, server, "seg_python", image, expected,
                                            max(clients_list))
                # warm-up at the largest concurrency: batch buffers reach their size
                run_clients(max(clients_list), args.warmup, args.max_seconds, call)
                for clients in clients_list:
                    local = [run_clients(clients, args.requests, args.max_seconds,
                                         lambda _i: segmenter.predict(image))]
                    rss_before = group_rss_mib(server.pid)
                    result = run_clients(clients, args.requests, args.max_seconds, call)
                    rss_after = group_rss_mib(server.pid)
                    local.append(run_clients(clients, args.requests, args.max_seconds,
                                             lambda _i: segmenter.predict(image)))
                    baseline = {"throughput": round(np.mean([r["throughput"] for r in local]),
                                                    2),
                                "p50_ms": round(np.mean([r["p50_ms"] for r in local]), 2)}
                    rows.append({"dynamic_batching": batching, "clients": clients, **result,
                                 "server_rss_before_mib": round(rss_before, 1),
                                 "server_rss_after_mib": round(rss_after, 1),
                                 "in_process_throughput": baseline["throughput"],
                                 "in_process_p50_ms": baseline["p50_ms"],
                                 "ratio_vs_in_process": round(result["throughput"]
                                                              / baseline["throughput"], 3)})
                    print(f"batching {'on' if batching else 'off'}, {clients} clients: "
                          f"{result['throughput']} answers/s", file=sys.stderr)
                close()
    segmenter.close()

    report = {"artifact": str(artifact), "image_size": [height, width],
              "instances": args.instances, "threads": args.threads,
              "protocol": args.protocol, "requests_per_client": args.requests,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "triton_load.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{artifact.name}, {height}x{width} uint8 images, {args.protocol}, "
          f"{args.requests} requests per client, {args.instances} instance(s), "
          f"threads {args.threads or 'default'}")
    print("| batching | clients | answers/s | p50 ms | p99 ms | errors | server RSS before -> "
          "after MiB | in-process answers/s | Triton / in-process |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {'on' if row['dynamic_batching'] else 'off'} | {row['clients']} | "
              f"{row['throughput']} | {row['p50_ms']} | {row['p99_ms']} | {row['errors']} | "
              f"{row['server_rss_before_mib']} -> {row['server_rss_after_mib']} | "
              f"{row['in_process_throughput']} | {row['ratio_vs_in_process']} |")
    return 1 if any(row["errors"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
