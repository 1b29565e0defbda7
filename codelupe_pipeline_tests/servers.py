"""Real Dagster and MLflow server processes for end-to-end tests, on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from codelupe_pipeline.settings import CHECKOUT_DIR, Settings

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment under which a server process sees the same settings as the test."""
    return {
        **os.environ,
        **settings.to_env(),
        "DAGSTER_HOME": str(settings.dagster_home),
        "PYTHONPATH": str(CHECKOUT_DIR),
    }


def wait_for_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status < 500:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


class Server:
    """A subprocess in its own process group, stopped (group and all) on exit; its log kept in `log`."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path, cwd: Path = CHECKOUT_DIR) -> None:
        self.args, self.env, self.log_path, self.cwd = args, dict(env), log, cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGINT)  # a graceful stop, as Ctrl-C would
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()


def dagster_dev(settings: Settings, port: int, log: Path) -> Server:
    """`dagster dev`: webserver plus daemon, on the checkout's workspace.yaml."""
    args = [str(BIN / "dagster"), "dev", "-w", str(CHECKOUT_DIR / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    return Server(args, settings_env(settings), log)


def mlflow_server(settings: Settings, port: int, log: Path) -> Server:
    args = [
        str(BIN / "mlflow"), "server", "--backend-store-uri", settings.resolved_mlflow_tracking_uri,
        "--artifacts-destination", str(settings.mlflow_artifact_root), "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    return Server(args, settings_env(settings), log)
