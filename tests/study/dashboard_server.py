"""optuna-dashboard as the README starts it (loopback, the artifact folder) for the tests that
query it (test_dashboard) or open it in chromium (test_browser)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard_server(storage_url: str, artifact_dir: Path, log_path: Path) -> Iterator[str]:
    """The server's base URL once it answers ``/api/meta`` (its output in ``log_path``); the
    test fails with the log's tail if it exits or is not up within a minute."""
    exe = Path(sys.executable).with_name("optuna-dashboard")
    assert exe.exists(), f"{exe}: optuna-dashboard is installed with the project"
    port = free_port()
    command = [str(exe), storage_url, "--artifact-dir", str(artifact_dir)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/api/meta", timeout=5):
                        break
                except (urllib.error.URLError, ConnectionError):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.flush()
                        pytest.fail(
                            f"optuna-dashboard did not start: {log_path.read_text()[-2000:]}"
                        )
                    time.sleep(0.2)  # a port that is not open yet: nothing to wait on but time
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
