"""The arrival sensor evaluated through build_sensor_context on a persistent instance: folder and S3 (moto)."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import dagster as dg
import pytest

from nexa_jobs.arrival import (
    BATCH_ENV,
    FILES_COUNT_TAG,
    FILES_TAG,
    MAX_RUNS_ENV,
    TRIGGER_TAG,
    arrival_sensor,
    files_tag,
)
from nexa_resources.inputs import InputsResource


def prompt_line(i: int, domain: str = "physics") -> bytes:
    row = {"domain": domain, "task_type": "hypothesis", "instruction": f"Propose hypotheses about effect {i}."}
    return (json.dumps(row) + "\n").encode()


class Folder:
    """The input as a local folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.inputs = InputsResource(uri=str(root))

    def put(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def put_many(self, items: dict[str, bytes]) -> None:
        for name, data in items.items():
            self.put(name, data)


class Prefix:
    """The input as an S3 prefix on moto's server."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.s3 = boto3.client("s3")
        self.inputs = InputsResource(uri=f"s3://{bucket}/incoming")

    def put(self, name: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=f"incoming/{name}", Body=data)

    def put_many(self, items: dict[str, bytes]) -> None:
        with ThreadPoolExecutor(8) as pool:  # 1,000 sequential PUTs to moto take ~16 s here
            list(pool.map(lambda item: self.put(*item), items.items()))


@pytest.fixture(params=["folder", "s3"])
def source(request, tmp_path) -> Folder | Prefix:
    if request.param == "folder":
        return Folder(tmp_path / "inputs")
    return Prefix(request.getfixturevalue("s3_env"))


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def warnings(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == logging.WARNING]


class Sensor:
    """Evaluates the sensor tick after tick, carrying the cursor like the daemon does; keeps context.log."""

    def __init__(self, instance: dg.DagsterInstance, inputs: InputsResource) -> None:
        self.instance = instance
        self.inputs = inputs
        self.cursor: str | None = None
        self.log = Records()

    def tick(self) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, resources={"inputs": self.inputs})
        context.log.addHandler(self.log)  # the sensor's own logger (it does not propagate to caplog)
        result = arrival_sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        return list(result.run_requests or [])

    def files(self, request: dg.RunRequest) -> list[str]:
        return request.run_config["ops"]["raw_prompts"]["config"]["files"]


def test_new_file_starts_one_run_once_stable_then_nothing(source, instance):
    sensor = Sensor(instance, source.inputs)
    assert sensor.tick() == []
    source.put("batch1.jsonl", prompt_line(1) + prompt_line(2))
    assert sensor.tick() == []  # first look: not yet known to be complete
    [request] = sensor.tick()
    assert sensor.files(request) == ["batch1.jsonl"]
    assert request.run_config == {"ops": {"raw_prompts": {"config": {"files": ["batch1.jsonl"]}}}}
    assert request.tags[TRIGGER_TAG] == "arrival"
    assert request.tags[FILES_COUNT_TAG] == "1" and request.tags[FILES_TAG] == "batch1.jsonl"
    assert request.run_key.startswith("arrival-")
    # Nothing changed: no run, tick after tick.
    assert sensor.tick() == [] and sensor.tick() == []
    cursor = json.loads(sensor.cursor)
    assert list(cursor["seen"]) == ["batch1.jsonl"] and cursor["pending"] == {}


def test_rewritten_same_content_and_copies_start_nothing_changed_file_starts_one(source, instance):
    sensor = Sensor(instance, source.inputs)
    source.put("a.jsonl", prompt_line(1))
    sensor.tick()
    [first] = sensor.tick()

    source.put("a.jsonl", prompt_line(1))  # same bytes written again (new mtime locally)
    source.put("copy-of-a.jsonl", prompt_line(1))  # same content under another name
    assert sensor.tick() == [] and sensor.tick() == [] and sensor.tick() == []

    source.put("a.jsonl", prompt_line(1) + prompt_line(3))  # changed
    assert sensor.tick() == []
    [changed] = sensor.tick()
    assert sensor.files(changed) == ["a.jsonl"]
    assert changed.run_key != first.run_key
    assert sensor.tick() == []

    source.put("a.jsonl", prompt_line(1))  # back to the first content: its rows are in the lake already
    assert sensor.tick() == [] and sensor.tick() == []
    assert sensor.log.records[-1].getMessage() == "content already taken, no run: a.jsonl"


def test_partial_file_waits_until_it_holds_still(source, instance):
    sensor = Sensor(instance, source.inputs)
    source.put("big.jsonl", b"")  # created, nothing written yet
    assert sensor.tick() == [] and sensor.tick() == []
    source.put("big.jsonl", prompt_line(1))  # half written
    assert sensor.tick() == []
    source.put("big.jsonl", prompt_line(1) + prompt_line(2))  # grew since the last look
    assert sensor.tick() == []
    [request] = sensor.tick()  # same size and stamp at two looks
    assert sensor.files(request) == ["big.jsonl"]
    # Temp names (`.part`, `.tmp`, `~`) and hidden files are never candidates.
    source.put("upload.jsonl.part", prompt_line(9))
    source.put(".hidden.jsonl", prompt_line(10))
    assert sensor.tick() == [] and sensor.tick() == []
    assert set(json.loads(sensor.cursor)["seen"]) == {"big.jsonl"}


def test_symlink_outside_the_folder_is_ignored_and_logged_once(tmp_path, instance):
    source = Folder(tmp_path / "inputs")
    secret = tmp_path / "outside.jsonl"
    secret.write_bytes(prompt_line(1))
    (source.root / "link.jsonl").symlink_to(secret)
    (source.root / "linked_dir").symlink_to(tmp_path, target_is_directory=True)
    source.put("real.jsonl", prompt_line(2))
    sensor = Sensor(instance, source.inputs)
    sensor.tick()
    [request] = sensor.tick()
    sensor.tick()
    assert sensor.files(request) == ["real.jsonl"]
    warnings = sensor.log.warnings()
    assert sum("link.jsonl" in w and "outside the input folder" in w for w in warnings) == 1, warnings
    assert sum("linked_dir" in w for w in warnings) == 1, warnings
    assert json.loads(sensor.cursor)["skipped"] == ["link.jsonl", "linked_dir"]


def test_s3_key_with_dotdot_is_ignored_and_logged(s3_env, instance):
    source = Prefix(s3_env)
    source.put("../escape.jsonl", prompt_line(1))
    source.put("ok.jsonl", prompt_line(2))
    sensor = Sensor(instance, source.inputs)
    sensor.tick()
    [request] = sensor.tick()
    assert sensor.files(request) == ["ok.jsonl"]
    assert ["../escape.jsonl" in w for w in sensor.log.warnings()] == [True]


def test_burst_of_1000_files_is_bounded_by_the_batch_size(source, instance, monkeypatch):
    monkeypatch.setenv(BATCH_ENV, "50")
    monkeypatch.setenv(MAX_RUNS_ENV, "8")
    names = [f"burst/{i:04d}.jsonl" for i in range(1000)]
    source.put_many({name: prompt_line(i) for i, name in enumerate(names)})
    sensor = Sensor(instance, source.inputs)
    assert sensor.tick() == []
    requests: list[dg.RunRequest] = []
    for _ in range(10):
        batch = sensor.tick()
        assert len(batch) <= 8
        if not batch:
            break
        requests += batch
    assert len(requests) == math.ceil(1000 / 50) == 20
    taken = [name for r in requests for name in sensor.files(r)]
    assert sorted(taken) == names  # every file exactly once
    assert all(len(sensor.files(r)) == 50 for r in requests)
    assert len({r.run_key for r in requests}) == 20
    assert all(len(r.tags[FILES_TAG]) <= 200 and "more)" in r.tags[FILES_TAG] for r in requests)
    assert len(sensor.cursor) < 100_000  # ~70 bytes a file
    assert sensor.tick() == []


def test_files_tag_is_bounded():
    assert files_tag(["a.jsonl", "b.jsonl"]) == "a.jsonl, b.jsonl"
    long = files_tag([f"file-{i:03d}.jsonl" for i in range(100)], max_chars=60)
    assert len(long) <= 60 and long.startswith("file-000.jsonl, ") and long.endswith("more)")
    assert files_tag(["x" * 300]) == "1 file"


def test_sensor_is_registered_running_on_the_refresh_job():
    from nexa_jobs.definitions import defs

    sensor = defs.resolve_sensor_def("arrival_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "refresh_job"
    assert sensor.minimum_interval_seconds <= 15


@pytest.fixture(autouse=True)
def _no_arrival_env(monkeypatch):
    for var in (BATCH_ENV, MAX_RUNS_ENV):
        monkeypatch.delenv(var, raising=False)
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
