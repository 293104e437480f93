"""`make up` / `make down` (nexa_ui/up.py): both UIs answer on 127.0.0.1, sensors run, down stops everything."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gone(pgid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_up_background_then_down(tmp_path):
    home = tmp_path / "dagster_home"
    dagster_port, ui_port = _free_port(), _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "NEXA_DAGSTER_PORT": str(dagster_port),
           "NEXA_UI_PORT": str(ui_port), "NEXA_LAKE_ROOT": str(tmp_path / "lake"), "OMP_NUM_THREADS": "1"}
    up = subprocess.run([sys.executable, "-m", "nexa_ui.up", "--background"], cwd=ROOT, env=env,
                        check=False, capture_output=True, text=True, timeout=300)
    pids = {p.stem: int(p.read_text()) for p in (home / "nexa-up").glob("*.pid")}
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{dagster_port}" in up.stdout
        assert f"http://127.0.0.1:{ui_port}" in up.stdout
        assert "sensors" in up.stdout
        assert "enabled: false" in (home / "dagster.yaml").read_text()  # telemetry off
        assert set(pids) == {"dagster", "streamlit"}
        with urllib.request.urlopen(f"http://127.0.0.1:{dagster_port}/server_info", timeout=5) as resp:
            assert b"dagster_webserver_version" in resp.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/_stcore/health", timeout=5) as resp:
            assert resp.read() == b"ok"
        # a second `up` refuses instead of starting twice
        again = subprocess.run([sys.executable, "-m", "nexa_ui.up", "--background"], cwd=ROOT, env=env,
                               check=False, capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and "make down" in again.stderr
    finally:
        down = subprocess.run([sys.executable, "-m", "nexa_ui.up", "--down"], cwd=ROOT, env=env,
                              check=False, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert all(_gone(pid) for pid in pids.values())
    assert not list((home / "nexa-up").glob("*.pid"))
