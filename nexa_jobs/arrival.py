"""Arrival sensor: new or changed files in the input folder (or S3 prefix) start a refresh run by themselves.

A file is taken when it is *stable* (same size and mtime/ETag at two looks, one tick apart) and its content
is new (sha256 not seen before). Stable new files are cut into batches of `NEXA_ARRIVAL_BATCH_FILES`; each
batch is one run of `refresh_job` whose run config tells `raw/prompts` to read only those files.

The cursor is JSON (shown in the Dagster UI on the sensor's page):

    {"v": 1,
     "seen": {"a.jsonl": ["<sha256[:16]>", <size>, "<etag or mtime>"], ...},   # listed now, content known
     "pending": {"b.jsonl": "<size>:<etag or mtime>", ...},                     # changed, waiting to be stable
     "gone": ["<sha256[:16]>", ...],      # content since removed or replaced (most recent last, capped)
     "skipped": ["link.jsonl", ...]}      # entries refused as unsafe (logged once, when first skipped)

`seen` and `pending` only hold files that are listed now, so the cursor grows with the input folder
(60–80 bytes a file), never with history; `gone` is capped at `MAX_GONE_HASHES`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dagster as dg

from nexa_assets.rounds import TRIGGER_TAG
from nexa_jobs.feedback_sensor import latest_loop_config
from nexa_jobs.jobs import refresh_job
from nexa_resources.inputs import InputFile, InputsResource
from nexa_resources.profiles import settings_env

BATCH_ENV = "NEXA_ARRIVAL_BATCH_FILES"
MAX_RUNS_ENV = "NEXA_ARRIVAL_MAX_RUNS_PER_TICK"
INTERVAL_ENV = "NEXA_ARRIVAL_INTERVAL_S"
DEFAULT_BATCH_FILES = 50
# Each run is a whole round of the loop (distill, train, evaluate): a burst is spread over several ticks
# rather than launched at once. Stable files beyond the cap stay pending and are taken on the next tick.
DEFAULT_MAX_RUNS_PER_TICK = 4
DEFAULT_INTERVAL_S = 10
# Hashes of content removed or replaced, kept so the same content coming back starts nothing. Beyond the
# cap the oldest are forgotten: such a file would start a run that adds no rows (prompts merge by key).
MAX_GONE_HASHES = 1000
# Run tags are shown on every run row in the UI: the file tag holds the first names, the run config all.
TAG_FILES_MAX_CHARS = 200
HASH_CHARS = 16
READ_THREADS = 8

FILES_TAG = "nexa/files"
FILES_COUNT_TAG = "nexa/files_count"
BATCH_TAG = "nexa/batch"


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = settings_env().get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected an integer >= {minimum}") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r}: expected an integer >= {minimum}")
    return value


@dataclass(frozen=True)
class ArrivalSettings:
    """How many files a run takes and how many runs one tick may request."""

    batch_files: int = DEFAULT_BATCH_FILES
    max_runs_per_tick: int = DEFAULT_MAX_RUNS_PER_TICK

    @classmethod
    def from_env(cls) -> ArrivalSettings:
        return cls(
            batch_files=_env_int(BATCH_ENV, DEFAULT_BATCH_FILES),
            max_runs_per_tick=_env_int(MAX_RUNS_ENV, DEFAULT_MAX_RUNS_PER_TICK),
        )


@dataclass
class ArrivalState:
    """What the sensor remembers between ticks (its cursor)."""

    seen: dict[str, list] = field(default_factory=dict)  # name -> [content hash, size, stamp]
    pending: dict[str, str] = field(default_factory=dict)  # name -> "size:stamp" at the last look
    gone: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> ArrivalState:
        if not cursor:
            return cls()
        data = json.loads(cursor)
        return cls(
            seen={k: list(v) for k, v in data.get("seen", {}).items()},
            pending=dict(data.get("pending", {})),
            gone=list(data.get("gone", [])),
            skipped=list(data.get("skipped", [])),
        )

    def to_cursor(self) -> str:
        data = {"v": 1, "seen": self.seen, "pending": self.pending, "gone": self.gone, "skipped": self.skipped}
        return json.dumps(data, separators=(",", ":"), sort_keys=False)


@dataclass(frozen=True)
class Batch:
    """Files taken together by one run, with their content hashes."""

    files: tuple[str, ...]
    hashes: tuple[str, ...]

    @property
    def run_key(self) -> str:
        digest = hashlib.sha256(",".join(sorted(self.hashes)).encode()).hexdigest()[:HASH_CHARS]
        return f"arrival-{digest}"


@dataclass
class TickPlan:
    """The outcome of one look at the input: batches to run, the next state, and what to log."""

    state: ArrivalState
    batches: list[Batch] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # changed, not yet stable (or over this tick's cap)
    same_content: list[str] = field(default_factory=list)  # rewritten or copied with content already taken
    newly_skipped: list[str] = field(default_factory=list)  # warnings to log this tick
    read_errors: list[str] = field(default_factory=list)
    unchanged: int = 0


def n_files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def stamp(f: InputFile) -> str:
    """The cheap change marker: the ETag on S3, the mtime locally."""
    return f.etag if f.etag else repr(f.mtime)


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:HASH_CHARS]


def plan_tick(
    state: ArrivalState,
    listed: Sequence[InputFile],
    skipped: Sequence[tuple[str, str]],
    read_bytes: Callable[[str], bytes],
    settings: ArrivalSettings,
) -> TickPlan:
    """Compare a listing with the remembered state; read (hash) only files that changed and held still."""
    plan = TickPlan(state=ArrivalState())
    known_skipped = set(state.skipped)
    plan.state.skipped = sorted(name for name, _ in skipped)
    plan.newly_skipped = [warning for name, warning in skipped if name not in known_skipped]
    stable = _stable_files(state, listed, plan, settings.batch_files * settings.max_runs_per_tick)
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:  # S3 reads are latency-bound
        contents = list(pool.map(lambda f: _read(read_bytes, f), stable))
    new_files, replaced = _hash_new(state, stable, contents, plan)
    plan.state.gone = _gone(state, plan.state, {f.name for f in listed}, replaced)
    for start in range(0, len(new_files), settings.batch_files):
        chunk = new_files[start : start + settings.batch_files]
        plan.batches.append(Batch(files=tuple(n for n, _ in chunk), hashes=tuple(h for _, h in chunk)))
    return plan


def _stable_files(state: ArrivalState, listed: Sequence[InputFile], plan: TickPlan, capacity: int) -> list[InputFile]:
    """Files whose new version held still since the last tick, at most `capacity`; the others wait.

    Reads per tick are capped too (not only new files), so a tick stays short even when thousands of
    files are renamed or touched at once; the rest stay pending, already stable, for the next tick."""
    nxt = plan.state
    stable: list[InputFile] = []
    for f in sorted(listed, key=lambda f: f.name):
        signature = f"{f.size}:{stamp(f)}"
        previous = state.seen.get(f.name)
        if previous is not None:
            # Kept until the new version is hashed, so a rewrite with the same content is recognised.
            nxt.seen[f.name] = previous
            if f"{previous[1]}:{previous[2]}" == signature:
                plan.unchanged += 1
                continue
        if f.size == 0 or state.pending.get(f.name) != signature or len(stable) >= capacity:
            # First look at this version of the file, an empty file (created, not yet written), or over
            # this tick's cap: look again next tick.
            nxt.pending[f.name] = signature
            plan.waiting.append(f.name)
            continue
        stable.append(f)
    return stable


def _read(read_bytes: Callable[[str], bytes], f: InputFile) -> bytes | Exception:
    try:
        return read_bytes(f.name)
    except (OSError, ValueError) as exc:  # deleted or replaced between listing and reading
        return exc


def _hash_new(
    state: ArrivalState, stable: list[InputFile], contents: list[bytes | Exception], plan: TickPlan
) -> tuple[list[tuple[str, str]], list[str]]:
    """(name, hash) of files with content not seen before, and the earlier hashes of files that changed."""
    nxt = plan.state
    taken_hashes = set(state.gone) | {entry[0] for entry in state.seen.values()}
    new_files: list[tuple[str, str]] = []
    replaced: list[str] = []
    for f, data in zip(stable, contents):
        if isinstance(data, Exception):
            plan.read_errors.append(f"could not read {f.name}: {data}")
            continue
        if len(data) != f.size:  # still being written after all: wait for two more identical looks
            nxt.pending[f.name] = f"{len(data)}:changed"
            plan.waiting.append(f.name)
            continue
        digest = content_hash(data)
        previous = state.seen.get(f.name)
        nxt.seen[f.name] = [digest, f.size, stamp(f)]
        if previous is not None and previous[0] != digest:
            replaced.append(previous[0])
        if digest in taken_hashes:
            plan.same_content.append(f.name)
            continue
        taken_hashes.add(digest)
        new_files.append((f.name, digest))
    return new_files, replaced


def _gone(state: ArrivalState, nxt: ArrivalState, listed_names: set[str], replaced: list[str]) -> list[str]:
    """Content of files that left the folder or changed, remembered (bounded) so that bringing it back starts
    nothing: its rows are in raw/prompts already."""
    still_listed = {entry[0] for entry in nxt.seen.values()}
    gone = [h for h in state.gone if h not in still_listed]
    left = [entry[0] for name, entry in state.seen.items() if name not in listed_names]
    for digest in [*left, *replaced]:
        if digest not in still_listed and digest not in gone:
            gone.append(digest)
    return gone[-MAX_GONE_HASHES:]


def files_tag(files: Sequence[str], max_chars: int = TAG_FILES_MAX_CHARS) -> str:
    """Comma-separated names, cut to at most `max_chars` with '…, (+N more)' at the end when cut."""
    text = ""
    for i, name in enumerate(files):
        candidate = f"{text}, {name}" if text else name
        more = len(files) - i - 1
        tail = f", … (+{more} more)" if more else ""
        if len(candidate) + len(tail) > max_chars:
            rest = len(files) - i
            return f"{text}, … (+{rest} more)" if text else n_files(rest)
        text = candidate
    return text


def run_request(batch: Batch, index: int, total: int, settings: dict | None = None) -> dg.RunRequest:
    """One refresh run for one batch: the full file list in run config, a readable summary in tags.

    `settings` is the loop's op config as last run (`latest_loop_config`): new files flow through with
    the prompt counts, training steps and thresholds the user last chose, not the bare defaults.
    """
    ops = {op: {"config": dict(entry["config"])} for op, entry in ((settings or {}).get("ops") or {}).items()}
    ops.setdefault("raw_prompts", {"config": {}})["config"]["files"] = list(batch.files)
    return dg.RunRequest(
        run_key=batch.run_key,
        run_config={"ops": ops},
        tags={
            TRIGGER_TAG: "arrival",
            FILES_COUNT_TAG: str(len(batch.files)),
            FILES_TAG: files_tag(batch.files),
            BATCH_TAG: f"{index}/{total}",
        },
    )


def max_runs_for(n_files: int, settings: ArrivalSettings) -> int:
    """The most runs a burst of n files can ever become."""
    return math.ceil(n_files / settings.batch_files)


@dg.sensor(
    name="arrival_sensor",
    job=refresh_job,
    minimum_interval_seconds=_env_int(INTERVAL_ENV, DEFAULT_INTERVAL_S),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="New or changed prompt files in the input folder or S3 prefix (NEXA_INPUT_URI) start "
    "refresh_job, one run per batch of up to NEXA_ARRIVAL_BATCH_FILES files, once each file's size and "
    "mtime/ETag held still for one tick. The cursor holds each file's content hash.",
)
def arrival_sensor(context: dg.SensorEvaluationContext, inputs: InputsResource) -> dg.SensorResult:
    """Request one refresh run per batch of new, stable input files."""
    settings = ArrivalSettings.from_env()
    state = ArrivalState.from_cursor(context.cursor)
    listed, skipped = inputs.list_files_detailed()
    plan = plan_tick(state, listed, skipped, inputs.read_bytes, settings)

    for warning in plan.newly_skipped:
        context.log.warning(warning)
    for error in plan.read_errors:
        context.log.warning(error)
    if plan.same_content:
        context.log.info(f"content already taken, no run: {', '.join(plan.same_content)}")
    loop_settings = latest_loop_config(context.instance) if plan.batches else None
    requests = [run_request(b, i + 1, len(plan.batches), loop_settings) for i, b in enumerate(plan.batches)]
    for request, batch in zip(requests, plan.batches):
        context.log.info(f"run {request.run_key}: {n_files(len(batch.files))} from {inputs.uri}: {files_tag(batch.files)}")
    cursor = plan.state.to_cursor()
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=cursor)
    reason = f"{n_files(len(listed))} in {inputs.uri}, none new and stable"
    if plan.waiting:
        reason += f"; {len(plan.waiting)} waiting to hold still for one tick ({files_tag(plan.waiting, 120)})"
    return dg.SensorResult(skip_reason=reason, cursor=cursor)


__all__ = ["ArrivalSettings", "ArrivalState", "arrival_sensor", "files_tag", "plan_tick"]
