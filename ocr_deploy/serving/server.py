"""Start and stop ``tritonserver`` (from the nvidia-pytriton wheel) on a model repository.

The server runs in its own process group with the serving environment's ``bin`` first on
``PATH``, so the Python backend's stub runs in that environment. It listens on loopback
unless told otherwise. ``stop()`` sends SIGTERM (Triton unloads its models and exits),
then kills whatever is left of the process group.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ocr_deploy.backends import by_triton_platform
from ocr_deploy.errors import BadInputError, ServerError
from ocr_deploy.serving.environment import ServingEnv

STARTUP_TIMEOUT = 120.0  # seconds for tritonserver to load its models


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


def free_ports(count: int = 3, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free on ``host`` now (the kernel's choice)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def repository_models(repo: Path) -> dict[str, str]:
    """``{model name: backend}`` for every model folder of a repository."""
    repo = Path(repo)
    if not repo.is_dir():
        raise BadInputError(repo, "a Triton model repository (a folder)", "no such folder",
                            "make one with ocr-package ARTIFACT --triton REPO")
    models = {}
    for config in sorted(repo.glob("*/config.pbtxt")):
        text = config.read_text()
        found = re.search(r'^\s*backend:\s*"([^"]+)"', text, re.M)
        platform = re.search(r'^\s*platform:\s*"([^"]+)"', text, re.M)
        backend = found.group(1) if found else \
            by_triton_platform().get(platform.group(1) if platform else "", "unknown")
        models[config.parent.name] = backend
    if not models:
        raise BadInputError(repo, "model folders with a config.pbtxt", "none",
                            "make the repository with ocr-package ARTIFACT --triton REPO")
    return models


class TritonServer:
    """One ``tritonserver`` process; use as a context manager or call ``start``/``stop``."""

    def __init__(self, env: ServingEnv, repo: Path, ports: Ports = Ports(),
                 host: str = "127.0.0.1", models: list[str] | None = None,
                 log: Path | None = None):
        self.env = env
        self.repo = Path(repo).resolve()
        self.ports = ports
        self.host = host
        self.models = models
        self.log = log
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        """The ``tritonserver`` command line."""
        command = [str(self.env.tritonserver), f"--model-repository={self.repo}",
                   f"--backend-directory={self.env.backend_dir}",
                   f"--http-port={self.ports.http}", f"--grpc-port={self.ports.grpc}",
                   f"--metrics-port={self.ports.metrics}", f"--http-address={self.host}",
                   f"--grpc-address={self.host}", f"--metrics-address={self.host}",
                   "--exit-timeout-secs=10"]
        if self.models is not None:
            command.append("--model-control-mode=explicit")
            command += [f"--load-model={name}" for name in self.models]
        return command

    def start(self, timeout: float = STARTUP_TIMEOUT) -> TritonServer:
        """Start the server and wait until it and its models are ready."""
        self._check_ports_free()
        env = dict(os.environ, PATH=f"{self.env.root / 'bin'}{os.pathsep}"
                   f"{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(self.env.root),
                   **self.env.library_path())
        env.pop("PYTHONHOME", None)
        output = open(self.log, "ab") if self.log else None  # noqa: SIM115 (kept open)
        try:
            self.process = subprocess.Popen(self.command(), env=env, stdout=output,
                                            stderr=subprocess.STDOUT if output else None,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            if output:
                output.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise ServerError(self.repo, "tritonserver to start and load its models",
                                  f"it exited with code {code}{self._log_tail()}",
                                  "read the server log; a port in use or a model that "
                                  "failed to load are the usual causes")
            if self.ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise ServerError(self.repo, f"tritonserver ready within {timeout:.0f} s",
                          f"not ready{self._log_tail()}", "raise --startup-timeout")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def url(self, protocol: str) -> str:
        """``host:port`` of the ``http``, ``grpc`` or ``metrics`` endpoint."""
        return f"{self.host}:{getattr(self.ports, protocol)}"

    def ready(self) -> bool:
        """Whether the server answers that it and its models are ready."""
        try:
            with urllib.request.urlopen(f"http://{self.url('http')}/v2/health/ready",
                                        timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL the process group; return the
        server's exit code. Safe to call twice."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # the backend stubs share its group
        return process.returncode

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _check_ports_free(self) -> None:
        """Fail before starting when a port is taken: the readiness probe would otherwise
        find whatever server already answers there."""
        for protocol in ("http", "grpc", "metrics"):
            port = getattr(self.ports, protocol)
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((self.host, port))
                except OSError as exc:
                    raise BadInputError(None, f"a free {protocol} port on {self.host}",
                                        f"port {port} in use ({exc.strerror})",
                                        f"pass another --{protocol}-port or stop what "
                                        "listens there") from None

    def _log_tail(self) -> str:
        if not self.log or not Path(self.log).is_file():
            return ""
        lines = [line for line in Path(self.log).read_text(errors="replace").splitlines()
                 if line.startswith("E") or "error" in line.lower()]
        return f" (log: {' | '.join(lines[-3:])[-400:]})" if lines else ""


__all__ = ["STARTUP_TIMEOUT", "Ports", "TritonServer",
           "free_ports", "repository_models"]
