"""Student training: data loading at a Delta version, staging, the trainer (loss falls, resume after a kill,
reload and generate, LoRA), and the train/checkpoints asset through Dagster with local compute."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from nexa_resources.tables.sft import EXAMPLE_SCHEMA
from nexa_core.text import content_hash
from nexa_assets.train.config import TrainConfig
from nexa_assets.train.data import (
    IGNORE_INDEX,
    build_dataloaders,
    build_loader,
    ids_digest,
    load_staged,
    sha256_file,
    stage_snapshot,
)
from nexa_resources.lake import LakeResource, Lineage

REPO = Path(__file__).resolve().parent.parent
DOMAINS = ("biology", "chemistry", "materials", "physics")
# Few, short steps: the tiny student's cost is its 49k-token LM head, so rows are kept to ~60 tokens.
FAST = {"preset": "tiny", "batch_size": 4, "max_seq_len": 128, "warmup_ratio": 0.0, "save_steps": 1000}


def sft_rows(n: int, start: int = 0) -> pl.DataFrame:
    """`n` short, learnable chat rows shaped like sft/examples; every 5th is split=val."""
    rows = []
    for i in range(start, start + n):
        domain, task = DOMAINS[i % 4], ("hypothesis", "methodology")[i % 2]
        user = f"Domain: {domain}\nTask: propose a {task} for sample {i}."
        answer = f"1. Measure the {domain} signal of sample {i}.\n2. Compare with a control.\n3. Report the change."
        prompt_id = content_hash("prompt", i)
        rows.append(
            {
                "example_id": content_hash(prompt_id, "example"),
                "prompt_id": prompt_id,
                "request_id": content_hash(prompt_id, "request"),
                "messages": [
                    {"role": "system", "content": "You are a careful scientist."},
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": answer},
                ],
                "prompt": user,
                "completion": answer,
                "domain": domain,
                "task_type": task,
                "split": "val" if i % 5 == 0 else "train",
                "judge_mean": 4.0,
            }
        )
    return pl.DataFrame(rows, schema=EXAMPLE_SCHEMA)


def write_examples(lake: LakeResource, rows: pl.DataFrame) -> int:
    return lake.write("sft/examples", rows, mode="merge", lineage=Lineage(run_id="test")).version


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from nexa_resources.local_model import ensure_local_model

    return AutoTokenizer.from_pretrained(ensure_local_model())


@pytest.fixture()
def sft_lake(lake: LakeResource) -> LakeResource:
    """A lake whose sft/examples has v0 (40 rows) and v1 (v0 + 20 more rows)."""
    assert write_examples(lake, sft_rows(40)) == 0
    assert write_examples(lake, sft_rows(20, start=40)) == 1
    return lake


def _train(lake: LakeResource, tmp_path: Path, out: str, version: int = 0, **overrides):
    from nexa_assets.train.trainer import train

    lines: list[str] = []
    metrics = train(
        sft_uri=lake.uri("sft/examples"),
        sft_version=version,
        output=str(tmp_path / out),
        config=TrainConfig.from_dict({**FAST, **overrides}),
        log=lines.append,
        stage_dir=tmp_path / "stage",
    )
    return metrics, lines


# ----------------------------------------------------------------------------------- data loading


def test_loader_returns_exactly_the_rows_at_the_version_and_split(sft_lake):
    v0 = sft_lake.read("sft/examples", version=0)
    loader = build_loader(sft_lake, "sft/examples", 0, "train", batch_size=8)
    seen = [row["example_id"] for batch in loader for row in batch]
    expected = v0.filter(pl.col("split") == "train")["example_id"].to_list()
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen)) == 32
    # the same through a lake root URI, and per split from one read
    loaders = build_dataloaders(sft_lake.root_uri(), "sft/examples", 0, batch_size=8)
    assert {r["example_id"] for b in loaders["val"] for r in b} == set(
        v0.filter(pl.col("split") == "val")["example_id"]
    )
    assert sum(len(b) for b in build_loader(sft_lake, "sft/examples", 1, None, batch_size=16)) == 60


def test_loader_tokenizes_with_the_chat_template_and_masks_the_prompt(sft_lake, tokenizer):
    loader = build_loader(sft_lake, "sft/examples", 0, "train", batch_size=4, tokenizer=tokenizer, max_seq_len=256)
    batch = next(iter(loader))
    assert set(batch) == {"input_ids", "attention_mask", "labels", "example_id"}
    ids, labels, mask = batch["input_ids"][0], batch["labels"][0], batch["attention_mask"][0]
    assert batch["input_ids"].shape[1] == int(batch["attention_mask"].sum(1).max())  # padded to longest, not max
    trained = labels[labels != IGNORE_INDEX].tolist()
    text = tokenizer.decode(trained)
    assert text.startswith("1. Measure the") and text.endswith("<|im_end|>\n")
    assert tokenizer.eos_token_id in trained  # EOS is a target: the student learns to stop
    assert "Task: propose" not in text  # no loss on the prompt
    assert tokenizer.decode(ids[: int(mask.sum())]).startswith("<|im_start|>system\nYou are a careful scientist.")


def test_stage_snapshot_writes_a_manifest_and_reuses_it(sft_lake, tmp_path):
    manifest = stage_snapshot(sft_lake.uri("sft/examples"), 0, tmp_path / "stage")
    assert manifest["version"] == 0 and manifest["rows"] == 40 and not manifest["reused"]
    assert manifest["sha256"] == sha256_file(manifest["path"])
    on_disk = json.loads(Path(manifest["path"]).with_suffix("").with_suffix(".manifest.json").read_text())
    assert on_disk["rows"] == 40 and on_disk["sha256"] == manifest["sha256"]
    assert load_staged(manifest, "train").height == 32
    assert stage_snapshot(sft_lake.uri("sft/examples"), 0, tmp_path / "stage")["reused"]
    assert stage_snapshot(sft_lake.uri("sft/examples"), 1, tmp_path / "stage")["rows"] == 60


def test_config_errors_name_the_valid_values(tmp_path):
    with pytest.raises(ValueError, match="valid values are tiny, smollm2-135m-lora"):
        TrainConfig(preset="gpt-5")
    with pytest.raises(ValueError, match="valid keys are"):
        TrainConfig.from_dict({"learning_rat": 1e-3})
    path = tmp_path / "c.yaml"
    path.write_text("preset: tiny\nmax_steps: 3\nlora: true\n")
    config = TrainConfig.from_file(path)
    assert config.max_steps == 3 and config.use_lora and config.lr == 2e-3
    proc = subprocess.run(
        [sys.executable, "-m", "nexa_assets.train", "--sft-uri", "x", "--sft-version", "0", "--output", "o",
         "--set", "preset=nope"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2 and "valid values are" in proc.stderr


def test_trainer_program_never_imports_dagster():
    code = (
        "import sys, nexa_assets.train.__main__, nexa_assets.train.trainer, nexa_assets.train.data, "
        "nexa_assets.train.local; assert 'dagster' not in sys.modules, 'dagster imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ---------------------------------------------------------------------------------------- trainer


@pytest.mark.slow
def test_tiny_student_loss_falls_and_the_checkpoint_reloads_and_generates(sft_lake, tmp_path, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    metrics, lines = _train(sft_lake, tmp_path, "out", max_steps=30)
    curve = [loss for _, loss in metrics["loss_curve"]]
    assert metrics["steps"] == 30 and len(curve) == 30
    assert sum(curve[-5:]) / 5 < 0.6 * sum(curve[:5]) / 5, curve
    assert metrics["val_loss"] < curve[0]
    assert metrics["sft_version"] == 0 and metrics["rows"] == 32 and metrics["val_rows"] == 8
    assert metrics["tokens"] > 0 and metrics["tokens_per_s"] > 0 and metrics["wall_s"] > 0
    assert any(line.startswith("step 30/30 loss") for line in lines)

    out = tmp_path / "out"
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert json.loads((out / "metrics.json").read_text())["steps"] == 30
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))
    loaded = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True).eval()
    messages = [{"role": "system", "content": "You are a careful scientist."},
                {"role": "user", "content": "Domain: physics\nTask: propose a methodology for sample 7."}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    with torch.no_grad():
        generated = loaded.generate(**prompt, max_new_tokens=12, do_sample=False)
    new = tokenizer.decode(generated[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert generated.shape[1] > prompt["input_ids"].shape[1] and "1." in new, new
    assert loaded.generation_config.eos_token_id == tokenizer.eos_token_id


_KILLABLE = [sys.executable, "-m", "nexa_assets.train", "--sft-version", "0"]


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(sft_lake, tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "train.json"
    config.write_text(json.dumps({**FAST, "max_steps": 12, "save_steps": 3}))
    cmd = _KILLABLE + ["--sft-uri", sft_lake.uri("sft/examples"), "--output", str(out), "--config", str(config),
                       "--stage-dir", str(tmp_path / "stage")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            seen.append(line)
            if line.startswith("saved checkpoint-"):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert not (out / "metrics.json").exists()

    metrics, lines = _train(sft_lake, tmp_path, "out", max_steps=12, save_steps=3)
    resumed = metrics["resumed_from_step"]
    assert resumed is not None and 3 <= resumed < 12, lines
    assert f"resuming from checkpoint-{resumed}" in lines
    steps_logged = [int(line.split()[1].split("/")[0]) for line in lines if line.startswith("step ")]
    assert steps_logged[0] == resumed + 1 and steps_logged[-1] == 12  # the global step continues, not from 0
    assert metrics["steps"] == 12 and [s for s, _ in metrics["loss_curve"]] == list(range(1, 13))
    assert metrics["tokens"] > metrics["tokens_this_run"] > 0


@pytest.mark.slow
def test_lora_on_smollm2_135m_trains_and_merges(sft_lake, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    metrics, _ = _train(sft_lake, tmp_path, "lora", preset="smollm2-135m-lora", max_steps=2, batch_size=2,
                        eval_split=None)
    assert metrics["lora"] and metrics["steps"] == 2
    assert metrics["trainable_params"] < 0.1 * metrics["params"]
    out = tmp_path / "lora"
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    model = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)  # merged: no peft needed
    assert not any("lora" in name for name, _ in model.named_parameters())
    with torch.no_grad():
        assert model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=2, do_sample=False).shape[1] == 5


# ------------------------------------------------------------------------------------------ asset


@pytest.mark.slow
def test_checkpoint_asset_materializes_with_local_compute(sft_lake, tmp_path):
    from nexa_assets.train.assets import train_checkpoints
    from nexa_assets.train.local import LocalCompute

    compute = LocalCompute(env={"NEXA_STAGE_DIR": str(tmp_path / "stage")})
    run_config = {"ops": {"train__checkpoints": {"config": {"max_steps": 4, "batch_size": 4, "max_seq_len": 128}}}}
    result = dg.materialize(
        [train_checkpoints],
        resources={"lake": sft_lake, "compute": compute},
        run_config=run_config,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    row = sft_lake.read("train/checkpoints").row(0, named=True)
    assert row["sft_version"] == 1 and row["backend"] == "local" and row["steps"] == 4
    assert row["cost_usd"] == 0.0 and row["tokens_per_s"] > 0 and json.loads(row["config"])["max_steps"] == 4
    assert row["run_id"] == result.run_id
    assert Path(row["uri"]) == Path(sft_lake.root_uri()) / "train" / "artifacts" / row["checkpoint_id"]
    assert (Path(row["uri"]) / "model.safetensors").exists()

    # sft/examples read back at the recorded version is exactly what trained, even after newer versions
    write_examples(sft_lake, sft_rows(10, start=60))
    trained = sft_lake.read("sft/examples", version=row["sft_version"]).filter(pl.col("split") == "train")
    assert trained.height == row["rows"] == 48
    assert ids_digest(trained["example_id"].to_list()) == row["rows_sha256"]
    manifest = json.loads((Path(row["uri"]) / "data_manifest.json").read_text())
    assert sorted(manifest["train_ids"]) == sorted(trained["example_id"].to_list())

    mat = result.asset_materializations_for_node("train__checkpoints")[0]
    meta = mat.metadata
    assert meta["sft_version"].value == 1 and meta["backend"].value == "local"
    assert meta["loss_curve"].value.startswith("![loss](data:image/png;base64,")
    assert meta["tokens_per_s"].value > 0 and meta["cost_usd"].value == 0.0
    checks = result.get_asset_check_evaluations()
    assert [c.check_name for c in checks] == ["loss_fell"]


def test_checkpoint_asset_fails_fast_without_sft_examples(lake):
    from nexa_assets.train.assets import train_checkpoints
    from nexa_assets.train.local import LocalCompute

    result = dg.materialize(
        [train_checkpoints],
        resources={"lake": lake, "compute": LocalCompute()},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "materialize the sft group first" in failure.message


@pytest.mark.slow
def test_trains_from_an_s3_lake_into_an_s3_output(s3_lake, s3_env, tmp_path, monkeypatch):
    import boto3

    from nexa_assets.train.trainer import train

    monkeypatch.setenv("NEXA_TRAIN_WORKDIR", str(tmp_path / "work"))
    version = write_examples(s3_lake, sft_rows(12))
    output = f"s3://{s3_env}/artifacts/run1"
    config = TrainConfig.from_dict({**FAST, "max_steps": 2, "save_steps": 2, "eval_split": None})
    metrics = train(sft_uri=s3_lake.uri("sft/examples"), sft_version=version, output=output, config=config,
                    log=lambda line: None, stage_dir=tmp_path / "stage")
    assert metrics["steps"] == 2 and metrics["output"] == output
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_env, Prefix="artifacts/run1/")["Contents"]}
    for name in ("model.safetensors", "tokenizer.json", "metrics.json", "checkpoint-2/trainer_state.json"):
        assert f"artifacts/run1/{name}" in keys


@pytest.mark.slow
def test_checkpoint_asset_runs_on_the_compute_resource_local_backend(sft_lake, tmp_path, monkeypatch):
    from nexa_assets.train.assets import train_checkpoints
    from nexa_resources.compute import ComputeResource

    monkeypatch.setenv("NEXA_STAGE_DIR", str(tmp_path / "stage"))
    config = {"max_steps": 2, "batch_size": 4, "max_seq_len": 128, "sft_version": 0, "backend": "local"}
    result = dg.materialize(
        [train_checkpoints],
        resources={"lake": sft_lake, "compute": ComputeResource(backend="local")},
        run_config={"ops": {"train__checkpoints": {"config": config}}},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    row = sft_lake.read("train/checkpoints").row(0, named=True)
    assert row["sft_version"] == 0 and row["rows"] == 32 and row["backend"] == "local" and row["steps"] == 2
    assert (Path(row["uri"]) / "model.safetensors").exists()


def test_newest_round_rows_are_weighted_and_a_single_round_is_left_alone():
    from nexa_assets.train.trainer import weight_newest_round

    rows = pl.DataFrame({"example_id": ["a", "b", "c", "d"], "round": [0, 0, 1, 1]})
    weighted, n = weight_newest_round(rows, 3)
    assert n == 2 and weighted.height == 8
    assert weighted["example_id"].value_counts().sort("example_id")["count"].to_list() == [1, 1, 3, 3]
    assert weight_newest_round(rows, 1) == (rows, 0)
    one_round = rows.with_columns(pl.lit(0).alias("round"))
    assert weight_newest_round(one_round, 3)[0].equals(one_round)
    with pytest.raises(ValueError, match="newest_round_weight=0"):
        TrainConfig(newest_round_weight=0)
