"""``ocr-serve REPO``: serve a Triton model repository from ``ocr-package`` on this machine.

Starts the ``tritonserver`` binary of the nvidia-pytriton wheel with its Python backend,
in the serving environment (``.venv-serve``, made on first use: numpy < 2, ONNX Runtime,
this package without TensorFlow). Models whose backend is not in that wheel (the
``onnxruntime_onnx`` and ``tensorrt_plan`` inference models, which need Triton's ONNX
Runtime / TensorRT backends on a GPU server) are skipped with a note; the end-to-end
Python-backend model serves. Prints the endpoints, then serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ocr_deploy.cli_support import EXIT_OK, add_reporting, parser_for, print_json, run_command
from ocr_deploy.errors import BadInputError, ServerError
from ocr_deploy.serving.environment import DEFAULT_ENV, ensure_env
from ocr_deploy.serving.server import STARTUP_TIMEOUT, Ports, TritonServer, repository_models


def build_parser() -> argparse.ArgumentParser:
    ports = Ports()
    parser = parser_for("ocr-serve", __doc__)
    parser.add_argument("repo", type=Path, nargs="?", metavar="REPO",
                        help="the model repository (from ocr-package ARTIFACT --triton REPO; "
                             "optional with --setup-only)")
    parser.add_argument("--http-port", type=int, default=ports.http, help="HTTP port")
    parser.add_argument("--grpc-port", type=int, default=ports.grpc, help="gRPC port")
    parser.add_argument("--metrics-port", type=int, default=ports.metrics,
                        help="Prometheus metrics port")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (127.0.0.1: this machine only)")
    parser.add_argument("--env", type=Path, default=DEFAULT_ENV,
                        help="the serving environment, made on first use")
    parser.add_argument("--startup-timeout", type=float, default=STARTUP_TIMEOUT, metavar="S",
                        help="seconds to wait for the models to load")
    parser.add_argument("--log", type=Path, default=None,
                        help="write the server's log to this file (default: to stderr)")
    parser.add_argument("--setup-only", action="store_true",
                        help="make or update the serving environment, then exit")
    add_reporting(parser, "the endpoints")
    return parser


def _note(quiet: bool):
    return (lambda _message: None) if quiet else \
        (lambda message: print(message, file=sys.stderr, flush=True))


def serve(args: argparse.Namespace) -> int:
    note = _note(args.quiet)
    env = ensure_env(args.env, note)
    if args.setup_only:
        note(f"ocr-serve: serving environment ready: {env.root}")
        return EXIT_OK
    if args.repo is None:
        raise BadInputError(None, "a model repository REPO", "none",
                            "pass the folder that ocr-package --triton wrote")
    models = repository_models(args.repo)
    here = sorted(n for n, b in models.items() if (env.backend_dir / b).is_dir())
    for name in sorted(set(models) - set(here)):
        note(f"ocr-serve: not serving '{name}': Triton's {models[name]} backend is not in the "
             "nvidia-pytriton wheel (serve it on a GPU server, in NVIDIA's Triton container)")
    if not here:
        raise BadInputError(args.repo, "a model this server can run (backend python)",
                            f"only {sorted(set(models.values()))} models",
                            "package with ocr-package, which adds the Python-backend model")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = TritonServer(env, args.repo, Ports(args.http_port, args.grpc_port,
                                                args.metrics_port),
                          host=args.host, models=here, log=args.log)
    try:
        server.start(args.startup_timeout)
        endpoints = {"http": server.url("http"), "grpc": server.url("grpc"),
                     "metrics": f"http://{server.url('metrics')}/metrics", "models": here,
                     "pid": server.pid}
        if args.json:
            print_json(endpoints)
        else:
            print(f"ocr-serve: serving {', '.join(here)} (pid {server.pid})\n"
                  f"  HTTP     http://{endpoints['http']}\n  gRPC     {endpoints['grpc']}\n"
                  f"  metrics  {endpoints['metrics']}\n  Ctrl-C stops it.", flush=True)
        while not stop.wait(0.5):
            if server.process.poll() is not None:
                raise ServerError(args.repo, "tritonserver to keep serving",
                                  f"it exited with code {server.process.returncode}",
                                  "read the server log")
    finally:
        code = server.stop()
    note(f"ocr-serve: stopped (server exit code {code})")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_command("ocr-serve", serve, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
