"""Build bench/data/judge_calibration_v1_references.jsonl: the teacher's answer to each calibration prompt.

The calibration prompts are asked exactly as `eval/predictions` asks its teacher row (the `include_teacher`
reference row): the default `TeacherResource` (the local SmolLM2-135M-Instruct, or the endpoint in
NEXA_TEACHER_* when set), its worked example of the task type before the prompt, and PredictionsConfig's
decoding (greedy, max_tokens 256, no repetition penalty), through the same `predict` function. bench/judge.py
reads the stored file and needs no model. A few minutes of CPU with the local teacher:

    OMP_NUM_THREADS=2 nice -n 19 .venv/bin/python bench/make_judge_references.py
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nexa_assets.distill.task import worked_example  # noqa: E402
from nexa_core.templates import templates  # noqa: E402
from nexa_assets.evaluate.assets import PredictionsConfig  # noqa: E402
from nexa_assets.evaluate.predict import eval_set_hash, predict  # noqa: E402
from nexa_assets.raw.validate import prompt_id  # noqa: E402
from nexa_resources.llm_client import run_sync  # noqa: E402
from nexa_resources.teacher import TeacherResource  # noqa: E402

CALIBRATION = ROOT / "bench" / "data" / "judge_calibration_v1.jsonl"
OUT = ROOT / "bench" / "data" / "judge_calibration_v1_references.jsonl"


def calibration_prompts(path: Path = CALIBRATION) -> pl.DataFrame:
    """The distinct prompts of the calibration set as eval/prompts rows (prompt_id as raw/prompts computes it)."""
    rows: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        p = json.loads(line)
        pid = prompt_id(p["domain"], p["task_type"], p["instruction"], p["context"])
        rows.setdefault(pid, {"prompt_id": pid, **{k: p[k] for k in ("domain", "task_type", "instruction", "context")}})
    frame = pl.DataFrame(list(rows.values()), schema_overrides={"context": pl.Utf8})
    return frame.with_columns(pl.lit(eval_set_hash(frame["prompt_id"].to_list())).alias("eval_set"))


def main() -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    prompts = calibration_prompts()
    teacher = TeacherResource.from_env()
    params = PredictionsConfig().sampling()
    shots = teacher.worked_examples
    model_id = f"teacher:{teacher.model_id}:shots={shots}"  # as eval/predictions names the teacher row

    async def ask() -> pl.DataFrame:
        client = teacher.client()
        try:
            return await predict(prompts, client, params, model_id=model_id, model_kind="teacher", checkpoint_id=None,
                                 shots=worked_example if shots else None, log=print)
        finally:
            await client.aclose()

    try:
        answers = run_sync(ask)
    finally:
        teacher.close()
    made = {
        "model_id": model_id,
        "template_version": templates().version,
        "sampling": params.as_request(),
        "generated_by": "bench/make_judge_references.py",
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
    }
    by_id = {r["prompt_id"]: r for r in answers.iter_rows(named=True)}
    out = []
    for p in prompts.iter_rows(named=True):
        a = by_id[p["prompt_id"]]
        out.append({
            **{k: p[k] for k in ("prompt_id", "domain", "task_type", "instruction", "context")},
            "reference": a["prediction"],
            "finish_reason": a["finish_reason"],
            "completion_tokens": a["completion_tokens"],
            "error": a["error"],
            **made,
        })
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    failed = sum(r["error"] is not None for r in out)
    print(f"wrote {len(out)} teacher references ({failed} failed) to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
