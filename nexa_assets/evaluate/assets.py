"""eval/prompts → eval/predictions → eval/scores → eval/metrics (group `evaluate`)."""

from collections.abc import Iterator

import dagster as dg
import polars as pl
from pydantic import Field

from nexa_assets.evaluate.answering import Answerer
from nexa_assets.evaluate.checks import held_out, held_out_spec
from nexa_assets.evaluate.judging import EvalSet, judge_predictions, scores_metadata, unscored
from nexa_assets.evaluate.predict import eval_set_hash
from nexa_assets.evaluate.remote import ANSWER_BACKENDS, answer_backend
from nexa_core.rubric import load_rubric
from nexa_resources.tables.eval import EVAL_PROMPT_SCHEMA
from nexa_assets.evaluate.scoring import by_round, cell_metrics, score_rows
from nexa_assets.evaluate.summary import metrics_metadata, overall_by_model, predictions_metadata
from nexa_assets.metadata import counts, materialization, preview
from nexa_assets.rounds import resolve_round, round_field, run_lineage
from nexa_assets.table_asset import table_asset
from nexa_assets.train.registry import newest_checkpoint
from nexa_resources.compute import ComputeResource
from nexa_resources.judge import JudgeCache, JudgeResource
from nexa_resources.lake import LakeResource, Lineage
from nexa_resources.llm_client import SamplingParams
from nexa_resources.teacher import TeacherResource


DESCRIPTIONS = {
    "eval/prompts": (
        "The held-out prompts (raw split `eval`): stable across rounds, never in a training table; "
        "eval_set is the hash of the whole set, recorded on every prediction, score and metric."
    ),
    "eval/predictions": (
        "Answers to every eval prompt from the newest checkpoint (served on 127.0.0.1 by the local "
        "model server, the teacher's path, or by vLLM on a GPU node through the `compute` resource: `backend`), and "
        "as reference rows from the student's base model, the teacher (with its worked examples) and configured "
        "external models; finish_reason and usage recorded; a (model, prompt) already answered is never asked again."
    ),
    "eval/scores": (
        "Rubric scores (1–5 per metric) for every prediction on the current eval set, from the `judge` "
        "resource (offline structural judge by default, LLM judge when configured); a failed or unparsable "
        "verdict is recorded with its reason and a null score, never a 0."
    ),
    "eval/metrics": (
        "Per model and cell (domain, task_type, metric): mean score, n, 95% t-interval, judge "
        "failures and truncation rate (reported apart, never averaged in), on the current eval set and judge."
    ),
}


class EvalPromptsConfig(dg.Config):
    round: int | None = round_field()
    per_cell: int | None = Field(
        default=None, ge=1, description="Keep at most this many eval prompts per (domain, task_type) (by id)."
    )


@table_asset(
    "eval/prompts",
    held_out_spec(),
    deps=["raw/prompts"],
    description=DESCRIPTIONS["eval/prompts"],
    group_name="evaluate",
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
    lineage = run_lineage(context, config.round, lake)
    written = lake.write("eval/prompts", frame, mode="merge", lineage=lineage, delete_unmatched=True)
    context.log.info(f"eval/prompts v{written.version}: {frame.height} held-out prompts, eval set {eval_set}")
    yield materialization(
        "eval/prompts",
        written,
        lake,
        eval_set=eval_set,
        by_cell=counts(frame, ["domain", "task_type"]),
        preview=preview(frame, ["prompt_id", "domain", "task_type", "instruction"]),
    )
    yield held_out(lake, frame)


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


@table_asset(
    "eval/predictions",
    deps=["eval/prompts", "train/checkpoints"],
    description=DESCRIPTIONS["eval/predictions"],
    group_name="evaluate",
    engine="openai",
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
    lineage = run_lineage(context, config.round, lake)
    try:
        answered_on = answer_backend(config.backend, checkpoint.get("backend"), compute)
    except ValueError as exc:
        raise dg.Failure(str(exc)) from None
    answers = Answerer(context, lake, prompts, config.sampling(), lineage, config.max_concurrency)
    if config.include_base:
        answers.base(checkpoint)
    answers.checkpoint(checkpoint, compute if answered_on == "compute" else None)
    if config.include_teacher:
        answers.teacher(teacher)
    for external in config.external_models:
        answers.external(external.base_url, external.model, external.api_key_env, external.price)
    table = lake.read("eval/predictions")
    return materialization(
        "eval/predictions", None, lake, **predictions_metadata(table, answers, checkpoint, answered_on)
    )


class ScoresConfig(dg.Config):
    round: int | None = round_field()
    rescore: bool = Field(default=False, description="Judge every prediction again, not only unscored ones.")


@table_asset("eval/scores", deps=["eval/predictions"], description=DESCRIPTIONS["eval/scores"], group_name="evaluate")
def eval_scores(
    context: dg.AssetExecutionContext, config: ScoresConfig, lake: LakeResource, judge: JudgeResource
) -> dg.MaterializeResult:
    """Judge the predictions this judge and rubric have not scored yet."""
    evals = EvalSet.read(lake, judge)
    references = evals.references()
    judge_model, rubric_version = judge.judge_model, evals.rubric_version
    todo = evals.predictions
    if not config.rescore:
        todo = unscored(todo, lake.read("eval/scores", missing_ok=True), judge_model, rubric_version)
    against = f", against {len(references)} answers of {evals.reference_model}" if references is not None else ""
    context.log.info(f"judging {todo.height} predictions with {judge_model} (rubric {rubric_version}){against}")
    lineage = run_lineage(context, config.round, lake)
    verdicts, ordered = judge_predictions(judge, todo, evals, references, JudgeCache(lake, lineage), context.log)
    metrics = list(load_rubric(judge.rubric).metrics)
    rows = score_rows(todo, ordered, metrics=metrics, judge_model=judge_model, rubric_version=rubric_version)
    written = lake.write("eval/scores", rows, mode="merge", lineage=lineage)
    return materialization(
        "eval/scores", written, lake, **scores_metadata(judge_model, rows, todo, verdicts, evals, references)
    )


class MetricsConfig(dg.Config):
    round: int | None = round_field()


@table_asset("eval/metrics", deps=["eval/scores"], description=DESCRIPTIONS["eval/metrics"], group_name="evaluate")
def eval_metrics(
    context: dg.AssetExecutionContext, config: MetricsConfig, lake: LakeResource, judge: JudgeResource
) -> dg.MaterializeResult:
    """Aggregate the current eval set's scores per model and cell."""
    evals = EvalSet.read(lake, judge)
    eval_set, rubric_version = evals.eval_set, evals.rubric_version
    scores = lake.read("eval/scores").filter(
        (pl.col("eval_set") == eval_set)
        & (pl.col("judge_model") == judge.judge_model)
        & (pl.col("rubric_version") == rubric_version)
    )
    if scores.is_empty():
        raise dg.Failure(
            f"no scores on eval set {eval_set} by {judge.judge_model} (rubric {rubric_version}): "
            "materialize eval/scores first"
        )
    predictions = lake.read("eval/predictions")
    if "model_label" not in predictions.columns:
        predictions = predictions.with_columns(pl.col("model_id").alias("model_label"))
    models = predictions.select("model_id", "model_kind", "model_label", "checkpoint_id")
    frame = cell_metrics(scores, models.unique("model_id", keep="last"))
    trained = lake.read("train/checkpoints", columns=["checkpoint_id", "round"], missing_ok=True)
    for model_round, part in by_round(frame, trained, resolve_round(context, config.round, lake)).items():
        written = lake.write("eval/metrics", part, mode="merge", lineage=Lineage.from_context(context, model_round))
    newest = newest_checkpoint(lake)["checkpoint_id"]
    overall = overall_by_model(scores, frame)
    context.log.info(f"eval/metrics v{written.version}: {frame.height} cells over {overall.height} models")
    return materialization("eval/metrics", written, lake, **metrics_metadata(eval_set, newest, frame, overall))


ASSETS = [eval_prompts, eval_predictions, eval_scores, eval_metrics]
