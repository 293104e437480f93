"""distill/logprobs: the teacher's top-k token probabilities of the chosen answers (off by default)."""

from collections.abc import Iterator

import dagster as dg
import polars as pl
from pydantic import Field

from nexa_assets.distill.logprobs import LOGPROBS_TABLE, empty_frame, load_local_teacher, score_answers
from nexa_assets.distill.task import worked_example
from nexa_assets.metadata import materialization, preview
from nexa_assets.rounds import round_field, run_lineage
from nexa_assets.table_asset import table_asset
from nexa_resources.lake import LakeResource
from nexa_resources.tables import asset_key
from nexa_resources.teacher import TeacherResource

LOGPROBS = asset_key("distill/logprobs")


class LogprobsConfig(dg.Config):
    """Whether and how the teacher's probabilities are kept."""

    round: int | None = round_field()
    top_k: int | None = Field(
        default=None,
        ge=0,
        le=20,
        description="Top-k log-probabilities per answer token; unset: the teacher's "
        "`top_logprobs` (0 by default: off, the table stays empty).",
    )
    with_worked_example: bool = Field(
        default=False,
        description="Score the local teacher's answers with the worked example it was asked with "
        "in its context (the distribution it sampled from) instead of the plain system + user prompt.",
    )
    max_answers: int | None = Field(default=None, gt=0, description="Score at most this many new answers.")


def _new_answers(lake: LakeResource, top_k: int, config: LogprobsConfig) -> list[dict]:
    """SFT rows (the chosen answers) whose request has no stored probabilities at this top-k yet."""
    examples = lake.read("sft/examples", columns=["request_id", "messages", "task_type"]).unique("request_id")
    done = lake.read(LOGPROBS_TABLE, columns=["request_id", "top_k"], missing_ok=True)
    if done.height:
        have = done.filter(pl.col("top_k") == top_k)["request_id"].unique()
        examples = examples.filter(~pl.col("request_id").is_in(have.implode()))
    examples = examples.sort("request_id")
    if config.max_answers is not None:
        examples = examples.head(config.max_answers)
    answers = []
    for row in examples.iter_rows(named=True):
        messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        if config.with_worked_example:
            messages = [*messages[:-2], *worked_example(row["task_type"]), *messages[-2:]]
        answers.append({"request_id": row["request_id"], "messages": messages})
    return answers


@table_asset(
    LOGPROBS_TABLE,
    deps=["sft/examples"],
    engine="pytorch",
    description="The teacher's top-k next-token log-probabilities of each chosen answer token, keyed by (request_id, "
    "position), with the tokenizer identity: what `distill_loss: kd` trains on. Off unless top_k (or the teacher's "
    "top_logprobs) is set: then the table stays empty (`enabled: false`). A remote teacher's rows arrive with "
    "its answers; the local one's are scored here in-process with the same weights. train/checkpoints depends on it, "
    "so a KD round trains on the probabilities of its own SFT rows.",
)
def distill_logprobs(
    context: dg.AssetExecutionContext, config: LogprobsConfig, lake: LakeResource, teacher: TeacherResource
) -> Iterator[dg.MaterializeResult]:
    """Score the new chosen answers with the local teacher (remote teachers: report coverage only)."""
    top_k = teacher.top_logprobs if config.top_k is None else config.top_k
    if not lake.exists("sft/examples"):
        raise dg.Failure("distill/logprobs scores the chosen answers in sft/examples: materialize it first")
    lineage = run_lineage(context, config.round, lake)
    written, scored = None, empty_frame()
    if not top_k:
        context.log.info("distill/logprobs is off (top_k 0): nothing scored")
    elif teacher.is_local:
        answers = _new_answers(lake, top_k, config)
        context.log.info(f"scoring {len(answers)} chosen answers with the local teacher (top-{top_k})")
        if answers:
            model, tokenizer = load_local_teacher()
            scored = score_answers(answers, model, tokenizer, top_k=top_k, teacher_model=teacher.model_id)
            written = lake.write(LOGPROBS_TABLE, scored, mode="merge", lineage=lineage)
    else:
        context.log.info("a remote teacher's probabilities are stored as it answers (teacher top_logprobs)")
    if not lake.exists(LOGPROBS_TABLE):  # always a table, empty while off: train/checkpoints waits on this asset
        written = lake.write(LOGPROBS_TABLE, empty_frame(), mode="append", lineage=lineage)
    table = lake.read(LOGPROBS_TABLE, columns=["request_id", "tokenizer"])
    sft_ids = lake.read("sft/examples", columns=["request_id"])["request_id"].unique()
    covered = table.filter(pl.col("request_id").is_in(sft_ids.implode()))["request_id"].n_unique()
    yield materialization(
        LOGPROBS_TABLE,
        written,
        lake,
        enabled=bool(top_k),
        answers=table["request_id"].n_unique(),
        sft_rows_covered=covered,
        sft_rows=sft_ids.len(),
        top_k=top_k,
        tokenizers=dg.MetadataValue.json(sorted(table["tokenizer"].unique().to_list())),
        preview=preview(scored, ["request_id", "position", "token", "logprob"]),  # this run's rows
    )
