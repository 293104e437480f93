"""eval/prompts → eval/predictions → eval/scores → eval/metrics (group `evaluate`)."""

import contextlib
import os
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from nexa_assets.distill.task import FREE, worked_example
from nexa_assets.evaluate.predict import eval_set_hash, pending_prompts, predict
from nexa_assets.evaluate.remote import ANSWER_BACKENDS, answer_backend, answer_on_compute
from nexa_assets.evaluate.reference import ReferenceSet
from nexa_assets.evaluate.report import cell_heatmap_markdown
from nexa_assets.evaluate.rubric import load_rubric
from nexa_assets.evaluate.schema import EVAL_PROMPT_SCHEMA, PREDICTION_SCHEMA
from nexa_assets.evaluate.stats import mean_ci
from nexa_assets.evaluate.scoring import cell_metrics, judge_items, judge_per_model, score_rows, teacher_references
from nexa_assets.metadata import counts, markdown_table, preview
from nexa_assets.rounds import resolve_round, round_field
from nexa_assets.train.trainer import TrainError, resolve_source
from nexa_resources.compute import ComputeResource
from nexa_resources.journal import Journal, journal_dir, recover_into
from nexa_resources.judge import JudgeCache, JudgeResource
from nexa_resources.lake import LakeResource, Lineage
from nexa_resources.llm_client import ChatClient, SamplingParams, run_sync
from nexa_resources.local_model import LocalModelServer
from nexa_resources.serving import serve_checkpoint
from nexa_resources.teacher import LOCAL_TIMEOUT_S, REMOTE_CONCURRENCY, TeacherResource

RAW_PROMPTS = dg.AssetKey(["raw", "prompts"])
CHECKPOINTS = dg.AssetKey(["train", "checkpoints"])
EVAL_PROMPTS = dg.AssetKey(["eval", "prompts"])
PREDICTIONS = dg.AssetKey(["eval", "predictions"])
SCORES = dg.AssetKey(["eval", "scores"])
METRICS = dg.AssetKey(["eval", "metrics"])
TRAINING_TABLES: tuple[str, ...] = ("distill/completions", "sft/examples")



class EvalPromptsConfig(dg.Config):
    round: int | None = round_field()
    per_cell: int | None = Field(
        default=None, ge=1, description="Keep at most this many eval prompts per (domain, task_type) (by id)."
    )


@dg.asset(
    key=EVAL_PROMPTS,
    deps=[RAW_PROMPTS],
    group_name="evaluate",
    kinds={"polars", "deltalake"},
    description="The held-out prompts (raw split `eval`): stable across rounds, never in a training table; "
    "eval_set is the hash of the whole set, recorded on every prediction, score and metric.",
    check_specs=[
        dg.AssetCheckSpec(
            "held_out",
            asset=EVAL_PROMPTS,
            blocking=True,
            description="No eval prompt appears in distill/completions or sft/examples.",
        )
    ],
)
def eval_prompts(
    context: dg.AssetExecutionContext, config: EvalPromptsConfig, lake: LakeResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Select the eval split; the table always equals the current set (rows that stay keep their lineage)."""
    raw = lake.read("raw/prompts").filter(pl.col("split") == "eval").sort("prompt_id")
    if config.per_cell is not None:
        raw = raw.filter(pl.int_range(pl.len()).over("domain", "task_type") < config.per_cell)
    if raw.is_empty():
        raise dg.Failure("raw/prompts has no eval-split prompts: materialize raw/prompts (the seed pack has some)")
    eval_set = eval_set_hash(raw["prompt_id"].to_list())
    frame = raw.with_columns(pl.lit(eval_set).alias("eval_set")).select(list(EVAL_PROMPT_SCHEMA))
    written = lake.write(
        "eval/prompts",
        frame,
        mode="merge",
        lineage=Lineage(run_id=context.run.run_id, round=resolve_round(context, config.round, lake)),
        delete_unmatched=True,
    )
    context.log.info(f"eval/prompts v{written.version}: {frame.height} held-out prompts, eval set {eval_set}")
    yield dg.MaterializeResult(
        asset_key=EVAL_PROMPTS,
        metadata={
            **written.metadata(),
            "dagster/row_count": frame.height,
            "eval_set": eval_set,
            "by_cell": counts(frame, ["domain", "task_type"]),
            "preview": preview(frame, ["prompt_id", "domain", "task_type", "instruction"]),
        },
    )
    ids = frame["prompt_id"].implode()
    leaked = {
        table: lake.read(table, columns=["prompt_id"]).filter(pl.col("prompt_id").is_in(ids)).height
        for table in TRAINING_TABLES
        if lake.exists(table)
    }
    yield dg.AssetCheckResult(
        asset_key=EVAL_PROMPTS,
        check_name="held_out",
        passed=not any(leaked.values()),
        metadata={"rows_in_training_tables": dg.MetadataValue.json(leaked)},
    )


class ExternalModel(dg.Config):
    """An OpenAI-compatible model answered as a reference row on the leaderboard."""

    base_url: str
    model: str
    api_key_env: str | None = Field(default=None, description="Name of the env var holding its API key.")
    price: list[float] | None = Field(
        default=None,
        description="USD per 1M (input, output) tokens, e.g. [0.15, 0.6]; unset: its answers' $ is unknown (null).",
    )


class PredictionsConfig(dg.Config):
    round: int | None = round_field()
    checkpoint_id: str | None = Field(default=None, description="Checkpoint to evaluate (default: the newest).")
    max_tokens: int = Field(default=256, gt=0, description="Answer length limit; longer answers count as truncated.")
    temperature: float = Field(default=0.0, ge=0, description="0 = greedy, so answers are reproducible.")
    max_concurrency: int = Field(
        default=128,
        gt=0,
        description="Requests in flight: the local model server batches them (96 eval prompts, one batch); external "
        "reference models get at most 16.",
    )
    include_base: bool = Field(
        default=True,
        description="Also answer with the student's base model before any training (a reference row, answered "
        "once per eval set).",
    )
    include_teacher: bool = Field(
        default=True,
        description="Also answer with the teacher as it is asked for data (its worked examples in context), "
        "at this config's decoding, as a reference row (answered once per eval set).",
    )
    external_models: list[ExternalModel] = Field(default_factory=list, description="More reference models.")
    backend: str = Field(
        default="auto",
        description=f"Where the checkpoint answers: {', '.join(ANSWER_BACKENDS)}. auto = where it was trained (a "
        "SkyPilot-trained checkpoint on a GPU node through the `compute` resource, else here); reference rows are "
        "always answered from here.",
    )

    def sampling(self) -> SamplingParams:
        return SamplingParams(temperature=self.temperature, top_p=1.0, max_tokens=self.max_tokens)


def overall_by_model(scores: pl.DataFrame, metrics: pl.DataFrame) -> pl.DataFrame:
    """Per model: label, mean over answers (each answer's metric scores averaged first: the five scores of one
    answer are not independent samples) with its 95% interval, answers, and truncation rate."""
    rows = []
    per_answer = scores.drop_nulls("score").group_by("model_id", "prompt_id").agg(pl.col("score").mean())
    for (model_id,), part in per_answer.group_by("model_id"):
        stats = mean_ci(part["score"].to_list())
        rows.append({"model_id": model_id, "overall": stats.mean, "ci_low": stats.ci_low, "ci_high": stats.ci_high,
                     "answers": stats.n})
    labels = metrics.group_by("model_id").agg(pl.col("model_label").first(), pl.col("truncation_rate").mean())
    return pl.DataFrame(rows).join(labels, on="model_id", how="left").select(
        "model_id", "model_label", *(pl.col(c).round(3) for c in ("overall", "ci_low", "ci_high")), "answers",
        pl.col("truncation_rate").round(3),
    )


def base_model_folder(base_model: str | None) -> Path | None:
    """The local folder of a checkpoint's pretrained base model, or None (scratch models, hub ids)."""
    if not base_model or base_model.startswith("scratch:"):
        return None
    if base_model.startswith("local:"):
        try:
            return Path(resolve_source(base_model))
        except TrainError:
            return None
    folder = Path(base_model).expanduser()
    return folder if (folder / "config.json").exists() else None


def newest_checkpoint(lake: LakeResource, checkpoint_id: str | None = None) -> dict[str, Any]:
    """The checkpoint row to evaluate: the one named, else the newest registered."""
    checkpoints = lake.read("train/checkpoints", missing_ok=True)
    if checkpoints.is_empty():
        raise dg.Failure("train/checkpoints is empty: materialize train/checkpoints first (group train)")
    if checkpoint_id is not None:
        found = checkpoints.filter(pl.col("checkpoint_id") == checkpoint_id)
        if found.is_empty():
            valid = ", ".join(checkpoints["checkpoint_id"].to_list())
            raise dg.Failure(f"unknown checkpoint_id {checkpoint_id!r}: valid values are {valid}")
        return found.row(0, named=True)
    return checkpoints.sort("created_at").row(-1, named=True)


def _answer(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    prompts: pl.DataFrame,
    client_factory: Any,
    params: SamplingParams,
    *,
    model_id: str,
    model_kind: str,
    checkpoint_id: str | None,
    lineage: Lineage,
    model_label: str | None = None,
    price: tuple[float, float] | None = None,
    shots: Any = None,
    answer_elsewhere: Any = None,
) -> dict[str, Any]:
    """Answer the prompts this model has not answered yet and merge them; returns this model's stats.

    Answers are journaled as they arrive, and those an interrupted run received are merged first.
    `answer_elsewhere(todo)` (the compute backend) returns all of todo's rows at once instead.
    """
    recovered = recover_into(lake, "eval/predictions", PREDICTION_SCHEMA)
    if recovered:
        context.log.info(f"recovered {recovered} eval answers that an interrupted run had received")
    answered = lake.read("eval/predictions", columns=["model_id", "prompt_id", "error"], missing_ok=True)
    todo = pending_prompts(prompts, answered, model_id)
    context.log.info(f"{model_id}: {prompts.height - todo.height} eval prompts answered before, {todo.height} to send")
    if todo.height and answer_elsewhere is not None:
        lake.write("eval/predictions", answer_elsewhere(todo), mode="merge", lineage=lineage)
    elif todo.height:
        with Journal.open(journal_dir(lake, "eval/predictions"), lineage) as journal:
            with client_factory() as make_client:

                async def answer_all() -> pl.DataFrame:
                    client = make_client()
                    try:
                        return await predict(
                            todo,
                            client,
                            params,
                            model_id=model_id,
                            model_kind=model_kind,
                            checkpoint_id=checkpoint_id,
                            model_label=model_label,
                            shots=shots,
                            price=price,
                            log=context.log.info,
                            on_row=journal.append,
                        )
                    finally:
                        await client.aclose()  # in the loop that opened its connections

                rows = run_sync(answer_all)
            lake.write("eval/predictions", rows, mode="merge", lineage=lineage)
            journal.discard()
    mine = lake.read("eval/predictions").filter(
        (pl.col("model_id") == model_id) & pl.col("prompt_id").is_in(prompts["prompt_id"].implode())
    )
    return {
        "sent": todo.height,
        "answered": mine.filter(pl.col("error").is_null()).height,
        "errors": mine.filter(pl.col("error").is_not_null()).height,
        "truncation_rate": round(float((mine["finish_reason"] == "length").mean() or 0.0), 4),
        "completion_tokens": int(mine["completion_tokens"].sum()),
    }


@contextlib.contextmanager
def _client_maker(make: Any, server: Any = None) -> Iterator[Any]:
    """Yields a no-argument ChatClient factory; a checkpoint's server runs for the duration of the block."""
    if server is None:
        yield lambda: make(None)
        return
    with server as served:
        yield lambda: make(served)


@dg.asset(
    key=PREDICTIONS,
    deps=[EVAL_PROMPTS, CHECKPOINTS],
    group_name="evaluate",
    kinds={"openai", "deltalake"},
    description="Answers to every eval prompt from the newest checkpoint (served on 127.0.0.1 by the local "
    "model server, the teacher's path, or by vLLM on a GPU node through the `compute` resource: `backend`), and "
    "as reference rows from the student's base model, the teacher (with its worked examples) and configured "
    "external models; finish_reason and usage recorded; a (model, prompt) already answered is never asked again.",
)
def eval_predictions(
    context: dg.AssetExecutionContext,
    config: PredictionsConfig,
    lake: LakeResource,
    teacher: TeacherResource,
    compute: dg.ResourceParam[ComputeResource],
) -> dg.MaterializeResult:
    """Serve the checkpoint, answer the eval prompts, and do the same for each reference model."""
    prompts = lake.read("eval/prompts")
    checkpoint = newest_checkpoint(lake, config.checkpoint_id)
    lineage = Lineage(run_id=context.run.run_id, round=resolve_round(context, config.round, lake))
    params = config.sampling()
    ckpt_id = checkpoint["checkpoint_id"]
    try:
        answered_on = answer_backend(config.backend, checkpoint.get("backend"), compute)
    except ValueError as exc:
        raise dg.Failure(str(exc)) from None

    def checkpoint_client(server: Any) -> ChatClient:
        return ChatClient(
            base_url=server.base_url,
            model=server.model_name,
            api_key="local",
            max_concurrency=config.max_concurrency,
            timeout_s=LOCAL_TIMEOUT_S,  # a request waits for the batches ahead of it
        )

    stats: dict[str, dict[str, Any]] = {}
    base = base_model_folder(checkpoint.get("base_model"))
    if config.include_base and base is None:
        context.log.info(f"no base-model row: {checkpoint.get('base_model')!r} is not a local pretrained model")
    if config.include_base and base is not None:
        base_id = f"base:{checkpoint['base_model']}"
        stats[base_id] = _answer(
            context,
            lake,
            prompts,
            lambda: _client_maker(checkpoint_client, server=LocalModelServer(base)),
            params,
            model_id=base_id,
            model_kind="base",
            model_label=f"base ({base.name}, untrained student)",
            checkpoint_id=None,
            lineage=lineage,
            price=FREE,
        )
    label = f"round {checkpoint.get('round', 0)} student ({checkpoint.get('preset')})"
    ran: dict[str, Any] = {}

    def on_compute(todo: pl.DataFrame) -> pl.DataFrame:
        spec = {"model_id": ckpt_id, "model_label": label, "checkpoint_id": ckpt_id,
                "temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_tokens,
                "max_concurrency": config.max_concurrency}
        rows, where = answer_on_compute(
            compute, todo, checkpoint_uri=checkpoint["uri"], spec=spec, run_id=context.run.run_id, log=context.log
        )
        ran.update(where)
        return rows

    stats[ckpt_id] = _answer(
        context,
        lake,
        prompts,
        lambda: _client_maker(checkpoint_client, server=serve_checkpoint(checkpoint["uri"])),
        params,
        model_id=ckpt_id,
        model_kind="checkpoint",
        model_label=label,
        checkpoint_id=ckpt_id,
        lineage=lineage,
        price=FREE,
        answer_elsewhere=on_compute if answered_on == "compute" else None,
    )
    if config.include_teacher:
        shots = teacher.worked_examples
        teacher_id = f"teacher:{teacher.model_id}:shots={shots}"
        stats[teacher_id] = _answer(
            context,
            lake,
            prompts,
            lambda: _client_maker(lambda _: teacher.client(context.log)),
            params,
            model_id=teacher_id,
            model_kind="teacher",
            model_label=teacher.label("greedy" if config.temperature == 0 else f"T={config.temperature}"),
            checkpoint_id=None,
            lineage=lineage,
            price=teacher.price(),
            shots=worked_example if shots else None,
        )
    for external in config.external_models:
        key = os.environ.get(external.api_key_env) if external.api_key_env else None
        stats[external.model] = _answer(
            context,
            lake,
            prompts,
            lambda ext=external, key=key: _client_maker(
                lambda _: ChatClient(
                    base_url=ext.base_url, model=ext.model, api_key=key or "none",
                    max_concurrency=min(config.max_concurrency, REMOTE_CONCURRENCY),
                )
            ),
            params,
            model_id=external.model,
            model_kind="external",
            model_label=external.model,
            checkpoint_id=None,
            lineage=lineage,
            price=(external.price[0], external.price[1]) if external.price else None,
        )
    table = lake.read("eval/predictions")
    summary = pl.DataFrame([{"model_id": m, **s} for m, s in stats.items()])
    return dg.MaterializeResult(
        metadata={
            "delta_version": lake.version("eval/predictions"),
            "dagster/row_count": table.height,
            "checkpoint_id": ckpt_id,
            "checkpoint_round": checkpoint.get("round"),
            "checkpoint_answered_on": answered_on,
            **({"eval_job": dg.MetadataValue.json(ran)} if ran else {}),
            "eval_prompts": prompts.height,
            "requests_sent": int(summary["sent"].sum()),
            "by_model": dg.MetadataValue.md(markdown_table(summary, rows=summary.height)),
            "preview": preview(
                table.filter(pl.col("model_id") == ckpt_id),
                ["prompt_id", "domain", "task_type", "finish_reason", "completion_tokens", "prediction"],
            ),
        }
    )


class ScoresConfig(dg.Config):
    round: int | None = round_field()
    rescore: bool = Field(default=False, description="Judge every prediction again, not only unscored ones.")


def reference_rows(
    judge: JudgeResource, predictions: pl.DataFrame, prompts: pl.DataFrame
) -> tuple[str | None, list[dict[str, Any]]]:
    """(teacher model, its answers) to judge one eval set's predictions against when the judge's `reference`
    option is on; (None, []) when it is off."""
    if not judge.reference:
        return None, []
    model, rows = teacher_references(predictions, prompts)
    if model is None:
        raise dg.Failure(
            "judge reference is on but eval/predictions has no teacher answers on this eval set: materialize "
            "eval/predictions with include_teacher: true, or turn the judge's reference option off"
        )
    return model, rows


@dg.asset(
    key=SCORES,
    deps=[PREDICTIONS],
    group_name="evaluate",
    kinds={"polars", "deltalake"},
    description="Rubric scores (1–5 per metric) for every prediction on the current eval set, from the `judge` "
    "resource (offline structural judge by default, LLM judge when configured); a failed or unparsable "
    "verdict is recorded with its reason and a null score, never a 0.",
)
def eval_scores(
    context: dg.AssetExecutionContext, config: ScoresConfig, lake: LakeResource, judge: JudgeResource
) -> dg.MaterializeResult:
    """Judge the predictions this judge and rubric have not scored yet."""
    prompts = lake.read("eval/prompts")
    eval_set = prompts["eval_set"][0]
    predictions = lake.read("eval/predictions").filter(pl.col("eval_set") == eval_set)
    reference_model, teacher_rows = reference_rows(judge, predictions, prompts)
    references = ReferenceSet.build(teacher_rows) if reference_model is not None else None
    judge_model, rubric_version = judge.judge_model, judge.eval_rubric_version(reference_model)
    all_predictions = predictions
    existing = lake.read("eval/scores", missing_ok=True)
    if not existing.is_empty() and not config.rescore:
        done = (
            existing.filter(
                (pl.col("judge_model") == judge_model)
                & (pl.col("rubric_version") == rubric_version)
                & pl.col("score").is_not_null()
            )
            .select("model_id", "prompt_id")
            .unique()
        )
        predictions = predictions.join(done, on=["model_id", "prompt_id"], how="anti")
    metrics = list(load_rubric(judge.rubric).metrics)
    context.log.info(f"judging {predictions.height} predictions with {judge_model} (rubric {rubric_version})"
                     + (f", against {len(references)} answers of {reference_model}" if references is not None else ""))
    answered = predictions.filter(pl.col("error").is_null())
    lineage = Lineage(run_id=context.run.run_id, round=resolve_round(context, config.round, lake))
    cache = JudgeCache(lake, lineage)
    verdicts = (
        judge_per_model(
            lambda items, corpus: judge.judge_many(items, context.log, corpus, cache=cache, references=references),
            answered,
            prompts,
            all_predictions,
        )
        if answered.height
        else []
    )
    by_key = dict(zip(zip(answered["model_id"], answered["prompt_id"]), verdicts))
    ordered = [by_key.get((m, p)) for m, p in zip(predictions["model_id"], predictions["prompt_id"])]
    rows = score_rows(predictions, ordered, metrics=metrics, judge_model=judge_model, rubric_version=rubric_version)
    written = lake.write("eval/scores", rows, mode="merge", lineage=lineage)
    failures = rows.filter(pl.col("score").is_null())
    return dg.MaterializeResult(
        metadata={
            **written.metadata(),
            "dagster/row_count": lake.read("eval/scores", columns=["metric"]).height,
            "judge_model": judge_model,
            "rubric_version": rubric_version,
            "reference_model": reference_model or "none",
            "judged_with_reference": 0
            if references is None
            else sum(references.text(i) is not None for i in judge_items(answered, prompts)),
            "judged_this_run": predictions.height,
            "judge_requests_paid": sum(1 for v in verdicts if v.prompt_tokens > 0),
            "judge_tokens": int(rows["judge_prompt_tokens"].sum() + rows["judge_completion_tokens"].sum()),
            "judge_cost_usd": "unknown"
            if rows["judge_cost_usd"].null_count()
            else round(float(rows["judge_cost_usd"].sum()), 6),
            "judge_failures_this_run": failures.select("model_id", "prompt_id").unique().height,
            "failure_kinds": counts(
                failures.with_columns(pl.col("error").str.extract(r"^([a-z_]+)").alias("kind")), ["kind"]
            ),
            "preview": preview(rows, ["model_id", "prompt_id", "metric", "score", "rationale", "error"]),
        }
    )


class MetricsConfig(dg.Config):
    round: int | None = round_field()


@dg.asset(
    key=METRICS,
    deps=[SCORES],
    group_name="evaluate",
    kinds={"polars", "deltalake"},
    description="Per model and cell (domain, task_type, metric): mean score, n, 95% t-interval, judge "
    "failures and truncation rate (reported apart, never averaged in), on the current eval set and judge.",
)
def eval_metrics(
    context: dg.AssetExecutionContext, config: MetricsConfig, lake: LakeResource, judge: JudgeResource
) -> dg.MaterializeResult:
    """Aggregate the current eval set's scores per model and cell."""
    prompts = lake.read("eval/prompts")
    eval_set = prompts["eval_set"][0]
    predictions = lake.read("eval/predictions")
    reference_model, _ = reference_rows(judge, predictions.filter(pl.col("eval_set") == eval_set), prompts)
    rubric_version = judge.eval_rubric_version(reference_model)
    scores = lake.read("eval/scores").filter(
        (pl.col("eval_set") == eval_set)
        & (pl.col("judge_model") == judge.judge_model)
        & (pl.col("rubric_version") == rubric_version)
    )
    if scores.is_empty():
        raise dg.Failure(f"no scores on eval set {eval_set} by {judge.judge_model} (rubric {rubric_version}): "
                         "materialize eval/scores first")
    if "model_label" not in predictions.columns:
        predictions = predictions.with_columns(pl.col("model_id").alias("model_label"))
    models = predictions.select("model_id", "model_kind", "model_label", "checkpoint_id").unique("model_id", keep="last")
    frame = cell_metrics(scores, models)
    run_round = resolve_round(context, config.round, lake)
    # A checkpoint's rows carry the round it was trained in; reference models take the run's round.
    trained = lake.read("train/checkpoints", columns=["checkpoint_id", "round"], missing_ok=True)
    rounds = {r["checkpoint_id"]: r["round"] for r in trained.iter_rows(named=True)} if trained.height else {}
    frame = frame.with_columns(
        pl.col("model_id").replace_strict(rounds, default=run_round, return_dtype=pl.Int64).alias("_round")
    )
    for (model_round,), part in frame.partition_by("_round", as_dict=True).items():
        lineage = Lineage(run_id=context.run.run_id, round=int(model_round))
        written = lake.write("eval/metrics", part.drop("_round"), mode="merge", lineage=lineage)
    frame = frame.drop("_round")
    newest = newest_checkpoint(lake)["checkpoint_id"]
    mine = frame.filter(pl.col("model_id") == newest)
    overall = overall_by_model(scores, frame)
    context.log.info(f"eval/metrics v{written.version}: {frame.height} cells over {overall.height} models")
    return dg.MaterializeResult(
        metadata={
            **written.metadata(),
            "dagster/row_count": lake.read("eval/metrics", columns=["metric"]).height,
            "eval_set": eval_set,
            "checkpoint_id": newest,
            "overall_by_model": dg.MetadataValue.md(markdown_table(overall.sort("overall", descending=True), rows=50)),
            "cell_scores": dg.MetadataValue.md(cell_heatmap_markdown(mine, f"{newest}: mean score per cell")),
            "weakest_cells": dg.MetadataValue.md(
                markdown_table(
                    mine.sort("mean", nulls_last=False).select(
                        "domain", "task_type", "metric", pl.col("mean").round(3), "n",
                        pl.col("ci_low").round(3), pl.col("ci_high").round(3), "judge_failures",
                    ),
                    rows=10,
                )
            ),
        }
    )


ASSETS = [eval_prompts, eval_predictions, eval_scores, eval_metrics]
__all__ = ["ASSETS", "newest_checkpoint"]
