"""Every setting Nexa reads from the environment, in one table, and the profiles (NEXA_PROFILE) that give them
values: an environment variable overrides its profile's value, which overrides the default.

`python -m nexa_resources.profiles --write docs/configuration.md` regenerates the docs' settings reference.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nexa_resources.generated import Section, main

PROFILE_ENV = "NEXA_PROFILE"
DEFAULT_PROFILE = "local"
PROFILES: dict[str, str] = {
    "local": "everything on this machine: the lake and the input files in folders, the local teacher, the offline "
    "judge, training in a subprocess",
    "s3": "the lake and the input files under `NEXA_S3_ROOT` on S3 or any S3-compatible store (credentials from "
    "`AWS_*`); the rest as `local`",
    "cloud": "`s3`, and training as a SkyPilot managed job on the cheapest GPU, its data and checkpoints under "
    "`NEXA_S3_ROOT` (what the Kubernetes deployment runs)",
}
MASK = "****"
UNSET = "(unset)"
ON_S3 = ("s3", "cloud")
GROUPS: dict[str, tuple[str, str]] = {
    "profile": ("Profile", ""),
    "lake": ("Lake, inputs and S3", "lake.md#lake-on-s3-or-any-s3-compatible-store"),
    "teacher": ("Teacher", "distill.md#the-teacher"),
    "judge": ("Judge", "evaluation.md#the-judge"),
    "compute": ("Training compute", "training.md#training-compute-local-or-the-cheapest-gpu-through-skypilot"),
    "runs": ("Runs, the Dagster instance and the UI", "running.md"),
    "sql": ("SQL limits", "lake.md#query-the-lake-with-sql"),
    "arrival": ("Arrival sensor", "data.md#new-files-start-the-pipeline"),
}


@dataclass(frozen=True)
class Setting:
    """One environment variable: its default, its value per profile, what it means, and whether it is a secret."""

    env: str
    group: str
    default: str
    description: str
    profiles: Mapping[str, str] = field(default_factory=dict)
    secret: bool = False
    kind: str = "text"  # text, int, number, flag (true/1), list (comma-separated) or choice (one of the named)


def _on_s3(template: str) -> dict[str, str]:
    return dict.fromkeys(ON_S3, template)


# fmt: off
SETTINGS: tuple[Setting, ...] = (
    Setting(PROFILE_ENV, "profile", DEFAULT_PROFILE, f"the resource set: {', '.join(PROFILES)}", kind="choice"),
    Setting("NEXA_LAKE_ROOT", "lake", "data_lake", "lake root: a folder or `s3://bucket/prefix`",
            _on_s3("{NEXA_S3_ROOT}/lake")),
    Setting("NEXA_INPUT_URI", "lake", "inputs", "input files: a folder or `s3://bucket/prefix`",
            _on_s3("{NEXA_S3_ROOT}/incoming")),
    Setting("NEXA_S3_ROOT", "lake", "s3://nexa", "the bucket and prefix the `s3` and `cloud` profiles put "
            "the lake, the inputs and training data under"),
    Setting("AWS_ENDPOINT_URL", "lake", "", "the S3-compatible endpoint (MinIO, moto, R2 …); unset for AWS"),
    Setting("AWS_ALLOW_HTTP", "lake", "", "`true` for a plain-HTTP endpoint", kind="flag"),
    Setting("AWS_REGION", "lake", "", "region (`AWS_DEFAULT_REGION` also read)"),
    Setting("AWS_ACCESS_KEY_ID", "lake", "", "S3 credentials: the key id", secret=True),
    Setting("AWS_SECRET_ACCESS_KEY", "lake", "", "S3 credentials: the secret key", secret=True),
    Setting("AWS_SESSION_TOKEN", "lake", "", "S3 credentials: a session token", secret=True),
    Setting("AWS_S3_ALLOW_UNSAFE_RENAME", "lake", "", "`true` opts out of S3 conditional writes, for stores "
            "without them, for a single writer only", kind="flag"),
    Setting("NEXA_TEACHER_BASE_URL", "teacher", "", "e.g. `https://api.openai.com/v1` or a vLLM server "
            "`http://host:8000/v1`; unset: the local model"),
    Setting("NEXA_TEACHER_MODEL", "teacher", "", "model name at that endpoint (e.g. `gpt-4o-mini`)"),
    Setting("NEXA_TEACHER_API_KEY", "teacher", "", "its key (else `OPENAI_API_KEY`); passed as `dagster.EnvVar`, "
            "never logged or stored", secret=True),
    Setting("OPENAI_API_KEY", "teacher", "", "the key of the teacher and the judge when theirs are unset",
            secret=True),
    Setting("NEXA_TEACHER_MAX_CONCURRENCY", "teacher", "", "requests at once: 16 for an endpoint, 128 for the "
            "local model (part of every request id: set it the same for the CLI, `make demo` and `make up`)",
            kind="int"),
    Setting("NEXA_TEACHER_MAX_TOKENS", "teacher", "", "answer length: 384 for an endpoint, 256 for the local "
            "model (part of every request id)", kind="int"),
    Setting("NEXA_TEACHER_TOP_LOGPROBS", "teacher", "0", "keep the teacher's top-k token log-probabilities "
            "(0: off)", kind="int"),
    Setting("NEXA_LOCAL_ENGINE", "teacher", "", "`transformers`: the local teacher runs on `transformers serve` "
            "instead of Nexa's batching server", kind="choice"),
    Setting("NEXA_CACHE_DIR", "teacher", "~/.cache/nexa", "where the local model is converted to safetensors once"),
    Setting("NEXA_JOURNAL_DIR", "teacher", "", "the answer journal that survives a killed run (unset: "
            "`<lake>/_journal/`, or `~/.cache/nexa/journal/` for an s3:// lake)"),
    Setting("NEXA_HTTP_TRANSPORT", "teacher", "", "`httpx`: the SDK's httpx path instead of aiohttp for chat "
            "completions", kind="choice"),
    Setting("NEXA_EVENT_LOOP", "teacher", "", "`asyncio`: the standard event loop instead of uvloop", kind="choice"),
    Setting("NEXA_JUDGE", "judge", "", "`structural` (the offline judge) or `llm`; unset: `llm` when a judge key "
            "is set, else `structural`", kind="choice"),
    Setting("NEXA_JUDGE_API_KEY", "judge", "", "the LLM judge's key (else `OPENAI_API_KEY`); with a key and no "
            "other setting the judge is `gpt-4.1-mini` on OpenAI (`gpt-4o-mini` when that is the teacher)",
            secret=True),
    Setting("NEXA_JUDGE_BASE_URL", "judge", "", "another OpenAI-compatible judge endpoint"),
    Setting("NEXA_JUDGE_MODEL", "judge", "", "the judge's model at that endpoint"),
    Setting("NEXA_JUDGE_MAX_CONCURRENCY", "judge", "", "judge requests at once", kind="int"),
    Setting("NEXA_JUDGE_MAX_TOKENS", "judge", "", "length of the judge's answer (256)", kind="int"),
    Setting("NEXA_JUDGE_REFERENCE", "judge", "", "`1`: judge eval answers against the teacher's answer to the "
            "same prompt (off by default)", kind="flag"),
    Setting("NEXA_COMPUTE_BACKEND", "compute", "local", "`local` or `skypilot`", {"cloud": "skypilot"}, kind="choice"),
    Setting("NEXA_COMPUTE_ACCELERATORS", "compute", "A10:1,A100:1,H100:1", "candidates, offered to SkyPilot as "
            "a *set*: its optimizer takes the cheapest", kind="list"),
    Setting("NEXA_COMPUTE_MIN_GPU_MEMORY_GB", "compute", "0", "leave out GPUs with less memory (per GPU)",
            kind="number"),
    Setting("NEXA_COMPUTE_SPOT", "compute", "false", "spot instances; a preempted job is relaunched and resumes "
            "from its last checkpoint", kind="flag"),
    Setting("NEXA_COMPUTE_MAX_PRICE_PER_HOUR", "compute", "4.0", "budget cap, USD per hour", kind="number"),
    Setting("NEXA_COMPUTE_MAX_TOTAL_USD", "compute", "20.0", "budget cap, USD for the estimated run", kind="number"),
    Setting("NEXA_COMPUTE_HOURS", "compute", "2.0", "expected training time, for the total cap", kind="number"),
    Setting("NEXA_COMPUTE_BUCKET", "compute", "", "`s3://bucket/prefix` for data and checkpoints (required by "
            "`skypilot`)", {"cloud": "{NEXA_S3_ROOT}"}),
    Setting("NEXA_COMPUTE_CLOUD", "compute", "", "pin a cloud (unset: any enabled)"),
    Setting("NEXA_COMPUTE_REGION", "compute", "", "pin a region (unset: any)"),
    Setting("NEXA_SKY_CATALOG_DIR", "compute", "", "price from a catalog snapshot folder instead of SkyPilot's "
            "cache (offline)"),
    Setting("NEXA_SKY_PYTHON", "compute", ".venv-sky/bin/python", "an interpreter with skypilot"),
    Setting("NEXA_TRAIN_WORKDIR", "compute", "", "where the trainer trains when its output is `s3://…` (unset: a "
            "temp folder)"),
    Setting("NEXA_STAGE_DIR", "compute", "", "where the trainer stages the SFT table version (unset: "
            "`$TMPDIR/nexa-stage`)"),
    Setting("SKY_RUNTIME_DIR", "compute", "", "SkyPilot's own: its catalogs then live under "
            "`$SKY_RUNTIME_DIR/.sky/catalogs/v8`"),
    Setting("SKYPILOT_API_SERVER_ENDPOINT", "compute", "", "SkyPilot's own: a remote API server holding the cloud "
            "credentials"),
    Setting("NEXA_EXECUTOR", "runs", "", "`multiprocess`: each step in a process of its own, independent steps in "
            "parallel (unset: in-process)", kind="choice"),
    Setting("NEXA_EXECUTOR_MAX_CONCURRENT", "runs", "", "steps at once under the multiprocess executor (unset: "
            "the CPU count)", kind="int"),
    Setting("DAGSTER_HOME", "runs", "", "where runs, events and sensor state go (unset: `.dagster_home/` once "
            "`make up` or `make demo` made it, else a throwaway instance)"),
    Setting("NEXA_DAGSTER_PG_URL", "runs", "", "`postgresql+psycopg2://user:password@host:5432/db`: Dagster's "
            "storage in PostgreSQL (unset: SQLite)", secret=True),
    Setting("NEXA_COMPUTE_LOG_BUCKET", "runs", "", "the step-log bucket's name for `deploy/dagster.yaml`"),
    Setting("NEXA_DAGSTER_PORT", "runs", "3000", "the Dagster UI's port (`make up`)", kind="int"),
    Setting("NEXA_UI_PORT", "runs", "8501", "the dashboard's port (`make up`)", kind="int"),
    Setting("NEXA_CHROMIUM", "runs", "/usr/bin/chromium", "the browser `nexa_ui.screenshots` and the browser "
            "test drive"),
    Setting("NEXA_SQL_TIMEOUT_S", "sql", "30", "seconds a query may run (`nexa sql --timeout SECONDS`; 0: no "
            "limit)", kind="number"),
    Setting("NEXA_SQL_MEMORY_LIMIT", "sql", "1GB", "memory a query may use, e.g. `4GB`"),
    Setting("NEXA_ARRIVAL_BATCH_FILES", "arrival", "50", "files per run", kind="int"),
    Setting("NEXA_ARRIVAL_MAX_RUNS_PER_TICK", "arrival", "4", "runs one tick may request", kind="int"),
    Setting("NEXA_ARRIVAL_INTERVAL_S", "arrival", "10", "seconds between looks (read when the code location "
            "loads)", kind="int"),
)
# fmt: on
BY_ENV: dict[str, Setting] = {s.env: s for s in SETTINGS}
# Set by Nexa for the SkyPilot tasks in sky/*.yaml, not by you (NEXA_TRAINER_MODULE and NEXA_PYTHON_VERSION are
# train.yaml's defaults).
TASK_ENV: tuple[str, ...] = (
    "NEXA_RUN_ID",
    "NEXA_SFT_URI",
    "NEXA_SFT_VERSION",
    "NEXA_OUTPUT_URI",
    "NEXA_TRAIN_CONFIG",
    "NEXA_BUCKET_URI",
    "NEXA_TRAINER_MODULE",
    "NEXA_PYTHON_VERSION",
    "NEXA_CHECKPOINT_URI",
    "NEXA_EVAL_PROMPTS_URI",
    "NEXA_EVAL_OUTPUT_URI",
    "NEXA_EVAL_SPEC",
)


def profile_name(environ: Mapping[str, str] | None = None) -> str:
    """The selected profile: NEXA_PROFILE, else `local`."""
    name = (os.environ if environ is None else environ).get(PROFILE_ENV, "").strip().lower() or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(f"unknown {PROFILE_ENV} {name!r}: valid profiles are {', '.join(PROFILES)}")
    return name


def profile_values(profile: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The values a profile gives, with `{VAR}` filled from the environment (else that setting's default)."""
    environ = os.environ if environ is None else environ
    fill = {s.env: (environ.get(s.env) or s.default).rstrip("/") for s in SETTINGS if not s.secret}
    return {s.env: s.profiles[profile].format(**fill) for s in SETTINGS if profile in s.profiles}


def settings_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment as the resources read it: the profile's values under every variable that is set."""
    environ = os.environ if environ is None else environ
    return {**profile_values(profile_name(environ), environ), **{k: v for k, v in environ.items() if v}}


@dataclass(frozen=True)
class Resolved:
    """One setting's value and where it came from: `env`, `profile <name>` or `default`."""

    setting: Setting
    value: str
    source: str

    def shown(self) -> str:
        if not self.value:
            return UNSET
        return MASK if self.setting.secret else self.value


def resolve_all(profile: str | None = None, environ: Mapping[str, str] | None = None) -> list[Resolved]:
    """Every setting resolved: env var, else the profile's value, else the default."""
    environ = dict(os.environ if environ is None else environ)
    if profile is not None:
        environ[PROFILE_ENV] = profile
    name = profile_name(environ)
    from_profile = profile_values(name, environ)
    resolved = []
    for s in SETTINGS:
        if environ.get(s.env):
            resolved.append(Resolved(s, environ[s.env], "env"))
        elif s.env in from_profile:
            resolved.append(Resolved(s, from_profile[s.env], f"profile {name}"))
        else:
            resolved.append(Resolved(s, s.default, "default"))
    return resolved


def secret_env(*names: str) -> Any:
    """A `dagster.EnvVar` for the first of these secret variables that is set, else None."""
    import dagster as dg

    for name in names:
        if not BY_ENV[name].secret:
            raise ValueError(f"{name} is not a secret setting; secrets are {', '.join(_secrets())}")
        if os.environ.get(name):
            return dg.EnvVar(name)
    return None


def _secrets() -> list[str]:
    return [s.env for s in SETTINGS if s.secret]


def _cell(text: str) -> str:
    return f"`{text}`" if text else ""


def _by_profile(setting: Setting) -> str:
    names: dict[str, list[str]] = {}
    for profile, value in setting.profiles.items():
        names.setdefault(value, []).append(profile)
    return "; ".join(f"{', '.join(profiles)}: `{value}`" for value, profiles in names.items())


def markdown() -> str:
    """The settings reference of docs/configuration.md: the profiles, then one table per group."""
    lines = ["| profile | what it means |", "|---|---|"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in PROFILES.items()]
    for group, (title, details) in GROUPS.items():
        lines += ["", f"### {title}", "", "| variable | type | default | by profile | meaning |", "|" + "---|" * 5]
        for s in (s for s in SETTINGS if s.group == group):
            secret = " **Secret**: read from the environment only, shown masked." if s.secret else ""
            lines.append(f"| `{s.env}` | {s.kind} | {_cell(s.default)} | {_by_profile(s)} | {s.description}.{secret} |")
        if details:
            lines += ["", f"Details: [{details.partition('#')[0]}]({details})."]
    tasks = ", ".join(f"`{name}`" for name in TASK_ENV)
    lines += ["", f"Set by Nexa for the SkyPilot tasks in `sky/*.yaml`, not by you: {tasks}."]
    return "\n".join(lines) + "\n"


SECTION = Section(
    begin="<!-- settings: generated by `python -m nexa_resources.profiles --write docs/configuration.md` -->",
    end="<!-- end of settings -->",
)


def with_reference(doc: str) -> str:
    """The document with its generated settings section replaced by `markdown()`."""
    return SECTION.fill(doc, markdown())


if __name__ == "__main__":
    sys.exit(main("python -m nexa_resources.profiles", __doc__, SECTION, markdown))
