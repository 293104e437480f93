"""Answer eval prompts on the compute backend: a SkyPilot managed job (sky/eval.yaml) serves the checkpoint
with vLLM on a GPU node and answers there through `predict` (nexa_assets/evaluate/node.py); the rows come
back through the bucket and are checked before eval/predictions merges them.

Plain functions over a `ComputeResource`: the price plan, budget caps, SkyPilot's parser, launch, wait and
teardown are the training path's (`checked_plan`, `fill_resources`, `run_managed_job`), and every cloud call
goes through its one seam, `ComputeResource.sky_client()`.
"""

from __future__ import annotations

import io
import json
from typing import Any

import polars as pl

from nexa_resources.compute import REPO_ROOT, ComputeError, ComputeResource, job_name
from nexa_resources.storage import s3_client, split_s3_uri
from nexa_resources.tables.eval import PREDICTION_SCHEMA

EVAL_TASK_YAML = REPO_ROOT / "sky" / "eval.yaml"
# Where a checkpoint's eval answers come from: auto = where it was trained.
ANSWER_BACKENDS: tuple[str, ...] = ("auto", "local", "compute")


class RemoteEvalFailed(ComputeError):
    """The eval job did not finish, or its answers are missing or not the rows asked for."""


def answer_backend(choice: str, trained_on: str | None, compute: Any) -> str:
    """'local' or 'compute': where the checkpoint answers, from the config's choice and where it trained."""
    if choice not in ANSWER_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(ANSWER_BACKENDS)}; got {choice!r}")
    where = choice if choice != "auto" else ("compute" if trained_on == "skypilot" else "local")
    backend = getattr(compute, "backend", "local")
    if where == "compute" and backend != "skypilot":
        why = "it was trained on skypilot (backend: auto)" if choice == "auto" else "backend: compute is set"
        raise RemoteEvalFailed(
            f"eval/predictions would answer on the compute backend ({why}), but the `compute` resource is "
            f"{backend!r}: set NEXA_COMPUTE_BACKEND=skypilot and NEXA_COMPUTE_BUCKET, or answer on this "
            "machine with backend: local"
        )
    return where


def eval_task(
    compute: ComputeResource,
    *,
    checkpoint_uri: str,
    prompts_uri: str,
    output_uri: str,
    spec: dict[str, Any],
    run_id: str,
    accelerators: list[str] | None = None,
    hourly_cap: float | None = None,
) -> dict[str, Any]:
    """The SkyPilot task for one eval: sky/eval.yaml with the compute resource's settings and this run's envs."""
    env = {
        "NEXA_CHECKPOINT_URI": checkpoint_uri,
        "NEXA_EVAL_PROMPTS_URI": prompts_uri,
        "NEXA_EVAL_OUTPUT_URI": output_uri,
        "NEXA_EVAL_SPEC": json.dumps(spec, sort_keys=True),
    }
    return compute.sky_task(EVAL_TASK_YAML, "eval", run_id, env, accelerators=accelerators, hourly_cap=hourly_cap)


def read_answers(output_uri: str, prompts: pl.DataFrame, model_id: str) -> pl.DataFrame:
    """The job's answers, exactly one PREDICTION_SCHEMA row of `model_id` per prompt asked."""
    bucket, key = split_s3_uri(output_uri)
    try:
        body = s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:  # noqa: BLE001 - botocore's errors carry the useful words
        raise RemoteEvalFailed(f"the eval job ended but {output_uri} could not be read: {exc}") from None
    frame = pl.read_parquet(io.BytesIO(body))
    missing = [c for c in PREDICTION_SCHEMA if c not in frame.columns]
    if missing:
        raise RemoteEvalFailed(f"{output_uri} lacks the prediction columns {', '.join(missing)}")
    rows = frame.select([pl.col(c).cast(t) for c, t in PREDICTION_SCHEMA.items()])
    others = sorted(set(rows["model_id"].to_list()) - {model_id})
    asked = set(prompts["prompt_id"].to_list())
    got = rows["prompt_id"].to_list()
    if others or len(got) != len(set(got)) or set(got) != asked:
        raise RemoteEvalFailed(
            f"{output_uri} is not one answer of {model_id} per prompt asked: {len(got)} rows for {len(asked)} "
            f"prompts, {len(asked - set(got))} unanswered, {len(set(got) - asked)} not asked"
            + (f", other models {', '.join(others)}" if others else "")
        )
    return rows


def answer_on_compute(
    compute: ComputeResource,
    prompts: pl.DataFrame,
    *,
    checkpoint_uri: str,
    spec: dict[str, Any],
    run_id: str,
    log: Any,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Answer `prompts` with the checkpoint on a GPU node; returns (rows, where it ran and what it cost).

    The job's cost is split evenly over its rows' cost_usd, so a sum over eval/predictions is what was paid.
    The job is cancelled (its cluster torn down) when it ends, whether it succeeded or not."""
    bucket = compute._require_bucket()
    if not checkpoint_uri.startswith(f"{bucket}/"):
        raise RemoteEvalFailed(
            f"the eval node reads the checkpoint through the bucket mount, and {checkpoint_uri} is not under "
            f"{bucket}: keep the lake (and so train/artifacts) under the bucket, e.g. NEXA_LAKE_ROOT={bucket}/lake, "
            "or answer on this machine with backend: local"
        )
    model_id = spec["model_id"]
    prefix = f"{bucket}/eval/{job_name('eval', run_id)}/{model_id}"
    prompts_uri, output_uri = f"{prefix}/prompts.parquet", f"{prefix}/predictions.parquet"
    s3 = s3_client()
    buffer = io.BytesIO()
    prompts.write_parquet(buffer)
    prompts_bucket, prompts_key = split_s3_uri(prompts_uri)
    output_bucket, output_key = split_s3_uri(output_uri)
    s3.put_object(Bucket=prompts_bucket, Key=prompts_key, Body=buffer.getvalue())
    s3.delete_object(Bucket=output_bucket, Key=output_key)  # no earlier try's answers

    client = compute.sky_client()
    plan = compute.checked_plan(client, log)
    task = eval_task(
        compute,
        checkpoint_uri=checkpoint_uri,
        prompts_uri=prompts_uri,
        output_uri=output_uri,
        spec=spec,
        run_id=run_id,
        accelerators=plan.launchable(),
        hourly_cap=plan.hourly_cap,
    )
    _job, record, wall_s = compute.run_managed_job(
        client, task, log=log, failure=RemoteEvalFailed, down_after=True
    )
    rows = read_answers(output_uri, prompts, model_id)
    ran = {**compute.where_ran(plan, record, wall_s), "wall_s": round(wall_s, 3), "job_name": task["name"]}
    rows = rows.with_columns(pl.lit(ran["cost_usd"] / rows.height, dtype=pl.Float64).alias("cost_usd"))
    log.info(
        f"{model_id}: {rows.height} answers from {ran['accelerator']} on {ran['cloud']} {ran['region']} in "
        f"{wall_s:.0f} s, ${ran['cost_usd']:.4f}"
    )
    return rows, ran
