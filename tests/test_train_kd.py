"""Soft-label distillation: a tiny student trained with `distill_loss: kd` on teacher probabilities stored in
distill/logprobs (scored in-process by the local teacher) brings the KL term down; a tokenizer mismatch fails at
once, naming both tokenizers and the option that turns KD off."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from nexa_assets.distill.logprobs import LOGPROBS_TABLE, load_local_teacher, score_answers
from nexa_resources.tables.sft import EXAMPLE_SCHEMA
from nexa_core.text import content_hash
from nexa_assets.train.config import TrainConfig
from nexa_resources.lake import LakeResource, Lineage

FAST = {"preset": "tiny", "batch_size": 4, "max_seq_len": 128, "warmup_ratio": 0.0, "save_steps": 1000,
        "eval_split": None}


def sft_rows(n: int) -> pl.DataFrame:
    rows = []
    for i in range(n):
        domain = ("biology", "chemistry", "materials", "physics")[i % 4]
        user = f"Domain: {domain}\nTask: propose a methodology for sample {i}."
        answer = f"1. Measure the {domain} signal of sample {i}.\n2. Compare with a control.\n3. Report the change."
        prompt_id = content_hash("kd-prompt", i)
        rows.append({
            "example_id": content_hash(prompt_id, "example"), "prompt_id": prompt_id,
            "request_id": content_hash(prompt_id, "request"),
            "messages": [{"role": "system", "content": "You are a careful scientist."},
                         {"role": "user", "content": user}, {"role": "assistant", "content": answer}],
            "prompt": user, "completion": answer, "domain": domain, "task_type": "methodology", "split": "train",
            "judge_mean": 4.0,
        })
    return pl.DataFrame(rows, schema=EXAMPLE_SCHEMA)


@pytest.fixture(scope="module")
def teacher():
    return load_local_teacher()


@pytest.fixture()
def kd_lake(lake: LakeResource, teacher) -> LakeResource:
    rows = sft_rows(16)
    lake.write("sft/examples", rows, mode="merge", lineage=Lineage(run_id="test"))
    model, tokenizer = teacher
    answers = [{"request_id": r["request_id"], "messages": r["messages"]} for r in rows.iter_rows(named=True)]
    scored = score_answers(answers, model, tokenizer, top_k=5, teacher_model="local/test")
    lake.write(LOGPROBS_TABLE, scored, mode="merge", lineage=Lineage(run_id="test"))
    return lake


def _train(lake: LakeResource, tmp_path: Path, **overrides):
    from nexa_assets.train.trainer import train

    lines: list[str] = []
    metrics = train(
        sft_uri=lake.uri("sft/examples"), sft_version=0, output=str(tmp_path / "out"),
        config=TrainConfig.from_dict({**FAST, **overrides}), log=lines.append, stage_dir=tmp_path / "stage",
    )
    return metrics, lines


def test_kd_config_defaults_off_and_validates():
    config = TrainConfig()
    assert config.distill_loss == "none" and "distill_loss" not in config.to_dict()  # default config unchanged
    with pytest.raises(ValueError, match="valid values are none, kd"):
        TrainConfig(distill_loss="soft")
    assert TrainConfig(distill_loss="kd").to_dict()["kd_weight"] == 0.5


@pytest.mark.slow
def test_tiny_student_trained_with_kd_brings_the_kl_term_down(kd_lake, tmp_path):
    metrics, lines = _train(kd_lake, tmp_path, max_steps=24, distill_loss="kd", kd_weight=1.0, kd_temperature=1.0)
    kd = metrics["kd"]
    curve = [kl for _, kl in kd["kl_curve"]]
    assert kd["rows_with_teacher"] == 16 and kd["top_k"] == 5 and len(curve) == 24
    assert sum(curve[-4:]) / 4 < 0.5 * sum(curve[:4]) / 4, curve
    assert metrics["distill_loss"] == "kd" and metrics["logprobs_version"] == 0
    assert metrics["config"]["logprobs_version"] == 0 and metrics["config"]["distill_loss"] == "kd"
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["kd"]["final_kl"] == curve[-1]
    assert any("kd_kl" in line for line in lines)


def test_a_teacher_with_another_tokenizer_fails_at_once_naming_both(lake, tmp_path):
    rows = sft_rows(4)
    lake.write("sft/examples", rows, mode="merge", lineage=Lineage(run_id="test"))
    from nexa_resources.tables.distill import LOGPROBS_SCHEMA

    other = pl.DataFrame([{
        "request_id": rows["request_id"][0], "position": 0, "token": "1", "token_id": 7, "logprob": -0.1,
        "top_tokens": ["1"], "top_token_ids": [7], "top_logprobs": [-0.1], "top_k": 1,
        "tokenizer": "vocab32000-0123456789ab", "tokenizer_name": "Llama-2-7b", "teacher_model": "remote",
        "source": "endpoint",
    }], schema=LOGPROBS_SCHEMA)
    lake.write(LOGPROBS_TABLE, other, mode="merge", lineage=Lineage(run_id="test"))
    from nexa_assets.train.trainer import TrainError

    with pytest.raises(TrainError) as caught:
        _train(lake, tmp_path, max_steps=2, distill_loss="kd")
    message = str(caught.value)
    assert "vocab32000-0123456789ab (Llama-2-7b)" in message
    assert re.search(r"the student tiny \(.+\) uses tokenizer vocab\d+-[0-9a-f]{12}", message), message
    assert "distill_loss: none" in message and "tiny" in message
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_kd_without_a_probability_table_says_what_to_do(lake, tmp_path):
    lake.write("sft/examples", sft_rows(4), mode="merge", lineage=Lineage(run_id="test"))
    from nexa_assets.train.trainer import TrainError

    with pytest.raises(TrainError, match="materialize distill/logprobs first"):
        _train(lake, tmp_path, max_steps=2, distill_loss="kd")
