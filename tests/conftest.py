"""Shared fixtures: a local lake in a temp folder, and a lake on moto's S3 server."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_UPDATE_CHECK", "1")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from nexa_resources.lake import LakeResource  # noqa: E402
from nexa_testing.scripted_server import ScriptedServer  # noqa: E402

# moto runs in a child process: delta-rs holds the GIL while it does HTTP, so a moto server thread in
# the pytest process itself would never get to answer and the write would deadlock.
_MOTO_SERVER = """
import sys, threading
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]))
server.start()
print("ready", flush=True)
threading.Event().wait()
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto server at {url} did not answer within {timeout:.0f}s")


@pytest.fixture
def lake(tmp_path) -> LakeResource:
    """A fresh local lake in a temp folder."""
    return LakeResource(root=str(tmp_path / "lake"))


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[dict[str, str]]:
    """moto's S3 server in a child process on a free local port; yields {"endpoint_url": ...}."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _MOTO_SERVER, str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_up(url, proc)
        yield {"endpoint_url": url, "port": str(port)}
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def s3_env(moto_s3, monkeypatch) -> str:
    """S3 settings in the environment pointing at moto, and a fresh bucket; returns the bucket name."""
    import boto3

    url = moto_s3["endpoint_url"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for var in ("AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN", "AWS_S3_ALLOW_UNSAFE_RENAME", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    bucket = f"nexa-test-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def s3_lake(s3_env) -> LakeResource:
    """A lake under s3://<fresh bucket>/lake on moto."""
    return LakeResource(root=f"s3://{s3_env}/lake")


@pytest.fixture(scope="session")
def scripted_server() -> Iterator[ScriptedServer]:
    """One scripted OpenAI-compatible server process for the whole session."""
    with ScriptedServer() as server:
        yield server


@pytest.fixture()
def srv(scripted_server: ScriptedServer) -> ScriptedServer:
    """The shared scripted server with default config, empty stats and fresh attempt counters."""
    scripted_server.reset()
    return scripted_server
