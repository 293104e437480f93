"""The deployment recipe (deploy/, docs/deploy.md), checked where it can be without Docker, Kubernetes or a cloud:

- deploy/Dockerfile installs exactly what `make setup` installs (the Makefile's two setup recipes, pip command
  for pip command, into the same environments), plus the one deploy-only line, pinned with dagster-aws;
- deploy/dagster.yaml validates against Dagster's own instance-config schema (and the S3 compute log manager's
  config schema), and planted typos are rejected;
- deploy/helm/values.yaml: a hand-written check of the keys Nexa relies on (the chart's values.schema.json is
  not installable here), run queue and run monitoring as nexa_jobs/instance.py writes them;
- no secret value in any deploy file; every NEXA_* variable the recipe names is one Nexa reads.

The serve YAML of the teacher (sky/serve_teacher.yaml, `sky serve up`) is parsed by SkyPilot's own parser in
tests/test_compute.py (test_task_yamls_parse_with_skypilots_parser).
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from dagster._config import validate_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes.config_class import class_from_code_pointer

from nexa_jobs import instance as nexa_instance

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DAGSTER_YAML = DEPLOY / "dagster.yaml"
HELM_VALUES = DEPLOY / "helm" / "values.yaml"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
# The one install step the image adds to `make setup`: the K8sRunLauncher's library (Helm chart deployments).
DEPLOY_ONLY_PACKAGES = ("dagster-k8s",)


# ------------------------------------------------------------------ Dockerfile == `make setup`


def _make_variables(text: str) -> dict[str, str]:
    """The Makefile's simple assignments (`NAME := value`, `NAME ?= value`), expanded in order."""
    variables: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Z_]+)\s*(?::=|\?=|=)\s*(.*)$", line)
        if m and not line.startswith("export"):
            variables[m.group(1)] = _expand(m.group(2).strip(), variables)
    return variables


def _expand(text: str, variables: dict[str, str]) -> str:
    for _ in range(5):
        text = re.sub(r"\$\(([A-Z_]+)\)", lambda m: variables.get(m.group(1), m.group(0)), text)
    return text


def _recipe(text: str, target: str) -> list[str]:
    """The command lines of one Makefile rule (tab-indented lines after `target:`)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    out = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        out.append(line[1:])
    return out


def _pip_installs(commands: list[str]) -> list[tuple[str, list[str]]]:
    """(interpreter, arguments after `pip install`) of every `<python> -m pip install ...` command."""
    out = []
    for command in commands:
        for part in command.split("&&"):
            words = shlex.split(part, comments=True)
            for i in range(len(words) - 3):
                if words[i + 1 : i + 4] == ["-m", "pip", "install"]:
                    out.append((words[i], words[i + 4 :]))
    return out


def make_setup_installs() -> list[tuple[str, list[str]]]:
    text = (REPO / "Makefile").read_text()
    variables = _make_variables(text)
    commands = []
    for target in _recipe_prereqs(text, "setup"):  # $(STAMP) $(SKY_STAMP): the .venv and .venv-sky recipes
        commands += [_expand(c, variables) for c in _recipe(text, target)]
    return _pip_installs(commands)


def _recipe_prereqs(text: str, target: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"{target}:"))
    return line.split(":", 1)[1].split()


def dockerfile_installs() -> list[tuple[str, list[str]]]:
    """The pip installs of the Dockerfile's RUN instructions (continuation lines joined), made relative to its
    WORKDIR the way the Makefile's are to the repository root."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    runs = [line[len("RUN ") :] for line in text.splitlines() if line.startswith("RUN ")]
    return _pip_installs(runs)


def test_dockerfile_installs_what_make_setup_installs():
    make = make_setup_installs()
    docker = dockerfile_installs()
    # The Makefile's recipes as read here (a broken parser would make the comparison vacuous).
    assert (".venv/bin/python", ["--quiet", "torch==2.13.0"]) in make
    assert (".venv/bin/python", ["--quiet", "-e", ".[dev]"]) in make
    assert any(interp == ".venv-sky/bin/python" for interp, _ in make)
    torch_first = [args for interp, args in make if interp == ".venv/bin/python" and args != ["--quiet", "--upgrade", "pip"]]
    assert torch_first[0][-1].startswith("torch=="), "make setup installs torch first"

    assert docker[: len(make)] == make, "deploy/Dockerfile's pip installs must be the Makefile's setup recipes"
    extra = docker[len(make) :]
    assert [args[-1].split("==")[0] for _, args in extra] == list(DEPLOY_ONLY_PACKAGES)


def test_deploy_only_package_is_pinned_with_dagsters_libraries():
    pyproject = (REPO / "pyproject.toml").read_text()
    library_pin = re.search(r'"dagster-aws==([0-9.]+)"', pyproject).group(1)
    extra = dockerfile_installs()[len(make_setup_installs()) :]
    assert extra == [(".venv/bin/python", ["--quiet", f"dagster-k8s=={library_pin}"])]


def test_planted_drift_in_the_dockerfile_is_caught(tmp_path, monkeypatch):
    drifted = tmp_path / "Dockerfile"
    drifted.write_text(DOCKERFILE.read_text().replace("torch==2.13.0", "torch==2.14.0"))
    monkeypatch.setattr(sys.modules[__name__], "DOCKERFILE", drifted)
    with pytest.raises(AssertionError, match="Makefile's setup recipes"):
        test_dockerfile_installs_what_make_setup_installs()


# ------------------------------------------------------------------ dagster.yaml: Dagster's own schema


def validate_instance_yaml(folder: Path) -> dict:
    """Dagster's instance-config validation (what DagsterInstance.from_config runs on $DAGSTER_HOME/dagster.yaml),
    then each configurable class's own config schema (compute logs, run launcher, ...), which the instance
    schema leaves open (`config: Permissive`) and Dagster checks only when it builds the class."""
    config, _ = dagster_instance_config(str(folder), "dagster.yaml")
    for key in ("compute_logs", "run_launcher", "run_coordinator", "local_artifact_storage", "secrets"):
        block = config.get(key)
        if not block or "module" not in block:
            continue
        try:
            klass = class_from_code_pointer(block["module"], block["class"])
        except Exception as error:  # noqa: BLE001 - Dagster raises a CheckError for a missing class
            raise DagsterInvalidConfigError(f"{key}: cannot load {block['module']}.{block['class']}: {error}", [], block) from error
        result = validate_config(klass.config_type(), block.get("config") or {})
        if not result.success:
            raise DagsterInvalidConfigError(f"{key}: {block['class']} config", result.errors, block.get("config"))
    return config


def test_dagster_yaml_validates_with_dagsters_instance_schema():
    config = validate_instance_yaml(DEPLOY)
    assert config["storage"] == {"postgres": {"postgres_url": {"env": "NEXA_DAGSTER_PG_URL"}}}  # README's variable
    assert config["compute_logs"]["class"] == "S3ComputeLogManager"
    # The same run queue, run monitoring and telemetry as the instance `make up` writes.
    local = yaml.safe_load(nexa_instance.DAGSTER_YAML)
    raw = yaml.safe_load(DAGSTER_YAML.read_text())
    for key in local:
        assert raw[key] == local[key], key


@pytest.mark.parametrize(
    ("typo", "replacement"),
    [
        ("run_monitoring:", "run_monitorng:"),  # an unknown top-level key
        ("postgres_url:", "postgres_uri:"),  # a storage field
        ("    bucket:", "    buckt:"),  # the S3 compute log manager's own config
        ("upload_interval: 30", "upload_interval: thirty"),  # a wrong type
        ("class: S3ComputeLogManager", "class: S3ComputeLogManagr"),  # a class that does not exist
    ],
)
def test_dagster_yaml_with_a_planted_typo_is_rejected(tmp_path, typo, replacement):
    text = DAGSTER_YAML.read_text()
    assert text.count(typo) == 1
    (tmp_path / "dagster.yaml").write_text(text.replace(typo, replacement))
    with pytest.raises(DagsterInvalidConfigError) as info:
        validate_instance_yaml(tmp_path)
    assert replacement.split(":")[-1].strip() in str(info.value) or replacement.split(":")[0].strip() in str(info.value)


def test_dagster_yaml_loads_as_an_instance_with_sqlite_in_place_of_postgres(tmp_path, monkeypatch):
    """Beyond the schema: Dagster builds the instance from the file (storage swapped for SQLite, the only part
    that needs a server) and constructs its S3 compute log manager."""
    import dagster as dg

    raw = yaml.safe_load(DAGSTER_YAML.read_text())
    raw["storage"] = {"sqlite": {"base_dir": str(tmp_path / "storage")}}
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("NEXA_COMPUTE_LOG_BUCKET", "nexa-test-bucket")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with dg.DagsterInstance.from_config(str(home)) as inst:
        manager = inst.compute_log_manager
        assert type(manager).__name__ == "S3ComputeLogManager"
        assert manager._s3_bucket == "nexa-test-bucket"  # noqa: SLF001 - the resolved env: value


# ------------------------------------------------------------------ Helm values: hand-written check


def _at(values: dict, path: str):
    node = values
    for part in path.split("."):
        if isinstance(node, list):
            node = node[int(part)]
        else:
            assert part in node, f"deploy/helm/values.yaml: {path} is missing ({part})"
            node = node[part]
    return node


# The keys Nexa relies on and their types, as in the chart's schema models (helm/dagster/schema in Dagster's
# repository). A hand-written check, not the chart's values.schema.json.
HELM_KEYS: dict[str, type | tuple[type, ...]] = {
    "global.postgresqlSecretName": str,
    "generatePostgresqlPasswordSecret": bool,
    "postgresql.enabled": bool,
    "postgresql.postgresqlHost": str,
    "postgresql.postgresqlUsername": str,
    "postgresql.postgresqlPassword": str,
    "postgresql.postgresqlDatabase": str,
    "postgresql.postgresqlParams": dict,
    "postgresql.service.port": int,
    "telemetry.enabled": bool,
    "computeLogManager.type": str,
    "computeLogManager.config.s3ComputeLogManager.bucket": str,
    "computeLogManager.config.s3ComputeLogManager.prefix": str,
    "computeLogManager.config.s3ComputeLogManager.uploadInterval": int,
    "runLauncher.type": str,
    "runLauncher.config.k8sRunLauncher.envSecrets": list,
    "webserver.envSecrets": list,
    "dagsterDaemon.envSecrets": list,
    "dagsterDaemon.runCoordinator.enabled": bool,
    "dagsterDaemon.runCoordinator.type": str,
    "dagsterDaemon.runCoordinator.config.queuedRunCoordinator.tagConcurrencyLimits": list,
    "dagsterDaemon.runMonitoring.enabled": bool,
    "dagsterDaemon.runMonitoring.startTimeoutSeconds": int,
    "dagsterDaemon.runMonitoring.maxResumeRunAttempts": int,
    "dagsterDaemon.runMonitoring.pollIntervalSeconds": int,
    "dagster-user-deployments.enabled": bool,
    "dagster-user-deployments.enableSubchart": bool,
    "dagster-user-deployments.deployments": list,
    "dagster-user-deployments.deployments.0.name": str,
    "dagster-user-deployments.deployments.0.image.repository": str,
    "dagster-user-deployments.deployments.0.image.tag": str,
    "dagster-user-deployments.deployments.0.image.pullPolicy": str,
    "dagster-user-deployments.deployments.0.dagsterApiGrpcArgs": list,
    "dagster-user-deployments.deployments.0.port": int,
    "dagster-user-deployments.deployments.0.includeConfigInLaunchedRuns.enabled": bool,
    "dagster-user-deployments.deployments.0.envConfigMaps": list,
    "dagster-user-deployments.deployments.0.envSecrets": list,
    "dagster-user-deployments.deployments.0.env": list,
}


def check_helm_values(values: dict) -> None:
    """Hand-written check of deploy/helm/values.yaml: raises AssertionError naming the first problem."""
    for path, kind in HELM_KEYS.items():
        value = _at(values, path)
        assert isinstance(value, kind) and not (kind is int and isinstance(value, bool)), (
            f"deploy/helm/values.yaml: {path} should be {kind}, is {value!r}"
        )
    assert _at(values, "postgresql.enabled") is False and _at(values, "generatePostgresqlPasswordSecret") is False
    assert _at(values, "computeLogManager.type") == "S3ComputeLogManager"
    assert _at(values, "runLauncher.type") == "K8sRunLauncher"
    assert _at(values, "dagsterDaemon.runCoordinator.type") == "QueuedRunCoordinator"
    pull_policy = _at(values, "dagster-user-deployments.deployments.0.image.pullPolicy")
    assert pull_policy in ("Always", "IfNotPresent", "Never"), pull_policy
    deployment = _at(values, "dagster-user-deployments.deployments.0")
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("--module-name") + 1] == "nexa_jobs.definitions"
    assert args[args.index("--working-directory") + 1] == "/opt/nexa"  # the Dockerfile's WORKDIR
    for item in deployment["env"]:
        assert set(item) == {"name", "value"} and isinstance(item["value"], str), item  # k8s EnvVar: strings
    for path in (
        "dagster-user-deployments.deployments.0.envSecrets",
        "dagster-user-deployments.deployments.0.envConfigMaps",
        "runLauncher.config.k8sRunLauncher.envSecrets",
        "webserver.envSecrets",
        "dagsterDaemon.envSecrets",
    ):
        for item in _at(values, path):
            assert set(item) == {"name"} and isinstance(item["name"], str), f"{path}: {item!r}"


def test_helm_values_hand_written_check():
    values = yaml.safe_load(HELM_VALUES.read_text())
    check_helm_values(values)
    # The code location's image is deploy/Dockerfile: its WORKDIR and port.
    dockerfile = DOCKERFILE.read_text()
    assert "WORKDIR /opt/nexa" in dockerfile and "EXPOSE 3030" in dockerfile
    # The same run queue and run monitoring as the instance `make up` writes (nexa_jobs/instance.py).
    local = yaml.safe_load(nexa_instance.DAGSTER_YAML)
    limits = _at(values, "dagsterDaemon.runCoordinator.config.queuedRunCoordinator.tagConcurrencyLimits")
    assert limits == local["run_queue"]["tag_concurrency_limits"]
    monitoring = _at(values, "dagsterDaemon.runMonitoring")
    camel = {re.sub(r"_(\w)", lambda m: m.group(1).upper(), k): v for k, v in local["run_monitoring"].items()}
    assert monitoring == camel
    # The same compute log bucket prefix as deploy/dagster.yaml.
    raw = yaml.safe_load(DAGSTER_YAML.read_text())
    s3 = _at(values, "computeLogManager.config.s3ComputeLogManager")
    assert s3["prefix"] == raw["compute_logs"]["config"]["prefix"]
    assert s3["uploadInterval"] == raw["compute_logs"]["config"]["upload_interval"]


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ("dagster-user-deployments.deployments.0.port", "3030"),
        ("postgresql.service.port", True),
        ("dagsterDaemon.runMonitoring.startTimeoutSeconds", "180"),
        ("dagster-user-deployments.deployments.0.envSecrets", {"name": "nexa-aws"}),
    ],
)
def test_helm_values_check_rejects_a_planted_error(path, bad):
    values = yaml.safe_load(HELM_VALUES.read_text())
    *parents, leaf = path.split(".")
    node = _at(values, ".".join(parents))
    node[int(leaf) if isinstance(node, list) else leaf] = bad
    with pytest.raises(AssertionError, match=re.escape(path)):
        check_helm_values(values)


def test_helm_values_check_rejects_a_missing_key():
    values = yaml.safe_load(HELM_VALUES.read_text())
    del values["dagster-user-deployments"]["deployments"][0]["dagsterApiGrpcArgs"]
    with pytest.raises(AssertionError, match="dagsterApiGrpcArgs is missing"):
        check_helm_values(values)


# ------------------------------------------------------------------ secrets and variables


DEPLOY_FILES = [DOCKERFILE, DAGSTER_YAML, HELM_VALUES, REPO / "sky" / "serve_teacher.yaml"]
SECRET_KEY = re.compile(r"(password|secret|token|api_?key|credential)", re.IGNORECASE)


def _leaves(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, f"{path}.{i}")
    else:
        yield path, node


@pytest.mark.parametrize("path", [DAGSTER_YAML, HELM_VALUES, REPO / "sky" / "serve_teacher.yaml"], ids=lambda p: p.name)
def test_no_secret_value_in_a_deploy_file(path):
    for key, value in _leaves(yaml.safe_load(path.read_text())):
        last = key.rsplit(".", 1)[-1]
        if SECRET_KEY.search(last) and not last.endswith(("SecretName", "Secrets", "SecretsName")):
            # a secret's *name* may be written; its value never (empty, null, or an `env:` reference)
            assert value in (None, "") or isinstance(value, bool), f"{path.name}: {key} holds a value"


def test_every_variable_the_recipe_names_is_one_nexa_or_dagster_reads():
    """NEXA_* names in docs/deploy.md and deploy/ are variables Nexa's code reads (or deploy/dagster.yaml
    defines for Dagster): a misspelt name in a Kubernetes secret would be silently ignored."""
    source = "\n".join(
        p.read_text() for folder in ("nexa_assets", "nexa_resources", "nexa_jobs", "nexa_ui") for p in (REPO / folder).rglob("*.py")
    )
    read = set(re.findall(r"NEXA_[A-Z0-9_]+", source))
    # Built from a prefix in the code (nexa_resources/teacher.py: f"{prefix}_BASE_URL" for NEXA_TEACHER/NEXA_JUDGE).
    for prefix in ("NEXA_TEACHER", "NEXA_JUDGE"):
        read |= {f"{prefix}_{suffix}" for suffix in ("BASE_URL", "MODEL", "API_KEY", "MAX_CONCURRENCY", "MAX_TOKENS")}
    read |= set(re.findall(r"env: (NEXA_[A-Z0-9_]+)", DAGSTER_YAML.read_text()))
    named = set()
    for path in [*DEPLOY_FILES, DEPLOY_DOC]:
        named |= set(re.findall(r"NEXA_[A-Z0-9_]+", path.read_text()))
    assert named, "no variable found: the pattern is wrong"
    assert named <= read, f"named in the deployment recipe but read nowhere: {sorted(named - read)}"


def test_deploy_doc_lists_every_secret_the_values_name():
    doc = DEPLOY_DOC.read_text()
    values = yaml.safe_load(HELM_VALUES.read_text())
    names = {_at(values, "global.postgresqlSecretName")}
    for path, value in _leaves(values):
        if re.search(r"env(Secrets|ConfigMaps)\.\d+\.name$", path):
            names.add(value)
    assert names >= {"nexa-aws", "nexa-llm", "nexa-skypilot", "dagster-postgresql-secret", "nexa-config"}
    for name in names:
        assert f"`{name}`" in doc, f"docs/deploy.md does not describe {name}"


def test_deploy_doc_marks_what_is_untested():
    doc = DEPLOY_DOC.read_text()
    assert "## What is tested and what is not" in doc
    for words in ("docker build", "values.schema.json", "sky serve up", "helm"):
        assert words in doc, words
    assert shutil.which("docker") is None or "Docker engine" in doc
