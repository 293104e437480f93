"""`make up` / `make down`: the Dagster UI + daemon and the Streamlit dashboard on 127.0.0.1.

    python -m nexa_ui.up                 # start both, print their URLs, Ctrl-C stops both
    python -m nexa_ui.up --background    # start both and return; logs under .dagster_home/logs/
    python -m nexa_ui.up --down          # stop what a background (or other terminal's) `up` started

Dagster runs as `dagster dev -w workspace.yaml` (webserver + daemon, so sensors and schedules tick) with a
persistent DAGSTER_HOME (default `.dagster_home/` in the project; run history, sensor state and cursors
survive restarts) whose `dagster.yaml` turns telemetry off. Ports: NEXA_DAGSTER_PORT (3000) and
NEXA_UI_PORT (8501). Each service runs in its own process group, recorded in `<DAGSTER_HOME>/nexa-up/*.pid`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nexa_jobs.instance import dagster_home, storage_label
from nexa_resources.lake import configured_root

HOST = "127.0.0.1"
READY_TIMEOUT_S = 240  # dagster dev imports the whole code location (torch, transformers) before answering
STOP_TIMEOUT_S = 20


@dataclass(frozen=True)
class Service:
    name: str
    title: str
    port: int
    argv: list[str]
    ready_path: str  # GET http://HOST:port<ready_path> answers 200 once it serves

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def project_root() -> Path:
    root = Path.cwd()
    if not (root / "workspace.yaml").is_file():
        raise SystemExit(f"run this from the Nexa project root (no workspace.yaml in {root})")
    return root


def services(root: Path) -> list[Service]:
    bin_dir = Path(sys.executable).parent
    dagster_port = int(os.environ.get("NEXA_DAGSTER_PORT", "3000"))
    ui_port = int(os.environ.get("NEXA_UI_PORT", "8501"))
    return [
        Service(
            "dagster", "Dagster UI (webserver + daemon)", dagster_port,
            [str(bin_dir / "dagster"), "dev", "-w", str(root / "workspace.yaml"), "-h", HOST, "-p", str(dagster_port)],
            "/server_info",
        ),
        Service(
            "streamlit", "Nexa dashboard (Streamlit)", ui_port,
            [sys.executable, "-m", "streamlit", "run", str(root / "nexa_ui" / "app.py"), "--server.address", HOST,
             "--server.port", str(ui_port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--client.toolbarMode", "minimal"],
            "/_stcore/health",
        ),
    ]


# ------------------------------------------------------------------------------------------ processes


def _pid_dir(home: Path) -> Path:
    path = home / "nexa-up"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _alive(pid: int, name: str) -> bool:
    """The process exists and is still ours (its command line names the service), not a reused pid."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True  # no /proc (macOS): trust the pid file
    return name in cmdline


def _recorded(home: Path) -> dict[str, int]:
    out = {}
    for pid_file in sorted(_pid_dir(home).glob("*.pid")):
        try:
            pid = int(pid_file.read_text().strip())
        except ValueError:
            pid_file.unlink(missing_ok=True)
            continue
        if _alive(pid, pid_file.stem):
            out[pid_file.stem] = pid
        else:
            pid_file.unlink(missing_ok=True)
    return out


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _ready(service: Service) -> bool:
    try:
        with urllib.request.urlopen(service.url + service.ready_path, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _stop_group(pid: int, name: str, first: int = signal.SIGTERM) -> None:
    """Signal the service's process group, then SIGKILL it if it has not exited after STOP_TIMEOUT_S."""
    try:
        os.killpg(pid, first)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        try:  # reap it if it is our child, so it does not linger as a zombie
            if os.waitpid(pid, os.WNOHANG)[0] == pid and not _group_alive(pid):
                return
        except ChildProcessError:
            pass
        time.sleep(0.2)
    print(f"{name} (pid {pid}) did not stop in {STOP_TIMEOUT_S}s: killing it", flush=True)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# ----------------------------------------------------------------------------------------- commands


def _sensor_summary(service: Service) -> str | None:
    """The code location's sensors and whether each is running, from Dagster's GraphQL API."""
    query = ("{ repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name "
             "sensorState { status } } } } } }")
    request = urllib.request.Request(
        service.url + "/graphql", data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            nodes = json.load(resp)["data"]["repositoriesOrError"]["nodes"]
    except (OSError, KeyError, TypeError, ValueError):
        return None
    sensors = [f"{s['name']} {s['sensorState']['status'].lower()}" for n in nodes for s in n["sensors"]]
    return ", ".join(sensors) if sensors else "none defined"


def up(background: bool) -> int:
    root = project_root()
    home = dagster_home(root)
    todo = services(root)
    if not _can_start(home, todo):
        return 1
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_DISABLE_TELEMETRY": "1"}
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    pid_dir = _pid_dir(home)

    def stop_all() -> None:
        for name, proc in reversed(list(procs.items())):
            if proc.poll() is None:
                print(f"stopping {name} (pid {proc.pid})", flush=True)
                # dagster dev shuts its webserver and daemon down cleanly on SIGINT
                _stop_group(proc.pid, name, signal.SIGINT if name == "dagster" else signal.SIGTERM)
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
            (pid_dir / f"{name}.pid").unlink(missing_ok=True)

    def on_signal(signum, _frame) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # also when started with SIGINT ignored (a background job)
    try:
        for service in todo:
            out = open(logs / f"{service.name}.log", "ab") if background else None  # noqa: SIM115
            procs[service.name] = subprocess.Popen(
                service.argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
            (pid_dir / f"{service.name}.pid").write_text(str(procs[service.name].pid))
        print(f"starting Dagster and the dashboard (DAGSTER_HOME={home}) …", flush=True)
        if not _wait_ready(todo, procs, logs if background else None):
            stop_all()
            return 1
        _print_started(todo, logs, background)
        if background:
            return 0
        _watch(procs)
        stop_all()
        return 1
    except KeyboardInterrupt:
        print(flush=True)
        stop_all()
        return 0
    except BaseException:
        stop_all()
        raise


def _can_start(home: Path, todo: list[Service]) -> bool:
    """False, saying why, when services run already or a port is taken."""
    running = _recorded(home)
    if running:
        names = ", ".join(f"{n} (pid {p})" for n, p in running.items())
        print(f"already running: {names}. Stop them with `make down` first.", file=sys.stderr)
        return False
    busy = [s for s in todo if not _port_free(s.port)]
    for s in busy:
        var = "NEXA_DAGSTER_PORT" if s.name == "dagster" else "NEXA_UI_PORT"
        print(f"port {s.port} on {HOST} is in use: stop what holds it, or set {var} to another port", file=sys.stderr)
    return not busy


def _wait_ready(todo: list[Service], procs: dict[str, subprocess.Popen], logs: Path | None) -> bool:
    """Whether every service answers within READY_TIMEOUT_S; False, saying why, when one exits or is late."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    pending = list(todo)
    while pending:
        for service in list(pending):
            if procs[service.name].poll() is not None:
                hint = f"; see {logs / (service.name + '.log')}" if logs is not None else ""
                print(f"{service.name} exited with code {procs[service.name].returncode}{hint}", file=sys.stderr)
                return False
            if _ready(service):
                pending.remove(service)
        if pending and time.monotonic() > deadline:
            print(f"{', '.join(s.name for s in pending)} did not answer within {READY_TIMEOUT_S}s", file=sys.stderr)
            return False
        time.sleep(0.5)
    return True


def _print_started(todo: list[Service], logs: Path, background: bool) -> None:
    """Where each service answers, the sensors, the lake and the run storage."""
    width = max(len(s.title) for s in todo)
    print(flush=True)
    for service in todo:
        print(f"  {service.title:<{width}}  {service.url}", flush=True)
    sensors = _sensor_summary(todo[0])
    if sensors:
        print(f"  {'sensors':<{width}}  {sensors}", flush=True)
    print(f"  {'lake':<{width}}  {configured_root()}", flush=True)
    print(f"  {'runs':<{width}}  {storage_label()}", flush=True)
    if background:
        print(f"\nrunning in the background (logs in {logs}); `make down` stops both.", flush=True)
    else:
        print("\nCtrl-C stops both.", flush=True)


def _watch(procs: dict[str, subprocess.Popen]) -> None:
    """Return once a service exits, saying which."""
    while True:
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f"{name} exited with code {proc.returncode}: stopping the rest", file=sys.stderr)
                return
        time.sleep(0.5)


def down() -> int:
    root = project_root()
    home = dagster_home(root)
    running = _recorded(home)
    if not running:
        print("nothing to stop (no running `make up` recorded in "
              f"{_pid_dir(home)})")
        return 0
    for name, pid in running.items():
        print(f"stopping {name} (pid {pid})", flush=True)
        _stop_group(pid, name, signal.SIGINT if name == "dagster" else signal.SIGTERM)
        (_pid_dir(home) / f"{name}.pid").unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nexa_ui.up", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--background", action="store_true", help="start both, print the URLs, and return")
    mode.add_argument("--down", action="store_true", help="stop what `up` started (its pid files)")
    args = parser.parse_args(argv)
    try:
        return down() if args.down else up(background=args.background)
    except ValueError as exc:  # e.g. an instance on PostgreSQL without NEXA_DAGSTER_PG_URL (nexa_jobs/instance.py)
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
