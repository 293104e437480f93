"""Answering the eval prompts: each model (checkpoint, base, teacher, external) asked only what it has not answered."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from nexa_assets.distill.task import worked_example
from nexa_core.pricing import FREE
from nexa_assets.evaluate.predict import pending_prompts, predict
from nexa_assets.evaluate.remote import answer_on_compute
from nexa_resources.tables.eval import PREDICTION_SCHEMA
from nexa_assets.train.trainer import TrainError, resolve_source
from nexa_resources.journal import Journal, journal_dir, recover_into
from nexa_resources.lake import LakeResource, Lineage
from nexa_resources.llm_client import ChatClient, SamplingParams, run_sync
from nexa_resources.local_model import LocalModelServer
from nexa_resources.serving import serve_checkpoint
from nexa_resources.teacher import LOCAL_TIMEOUT_S, REMOTE_CONCURRENCY, TeacherResource


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


def _ask(
    context: Any, todo: pl.DataFrame, client_factory: Any, params: SamplingParams, journal: Journal, **model: Any
) -> pl.DataFrame:
    """The rows `todo` gets from the model's client, each journaled as it arrives."""
    with client_factory() as make_client:

        async def answer_all() -> pl.DataFrame:
            client = make_client()
            try:
                return await predict(todo, client, params, log=context.log.info, on_row=journal.append, **model)
            finally:
                await client.aclose()  # in the loop that opened its connections

        return run_sync(answer_all)


def answer_model(
    context: Any,
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
            model = {
                "model_id": model_id,
                "model_kind": model_kind,
                "checkpoint_id": checkpoint_id,
                "model_label": model_label,
                "shots": shots,
                "price": price,
            }
            rows = _ask(context, todo, client_factory, params, journal, **model)
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
def client_maker(make: Any, server: Any = None) -> Iterator[Any]:
    """Yields a no-argument ChatClient factory; a checkpoint's server runs for the duration of the block."""
    if server is None:
        yield lambda: make(None)
        return
    with server as served:
        yield lambda: make(served)


@dataclass
class Answerer:
    """One eval run: its prompts, decoding, lineage and concurrency, and the stats of every model it asked."""

    context: Any
    lake: LakeResource
    prompts: pl.DataFrame
    params: SamplingParams
    lineage: Lineage
    max_concurrency: int
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    ran: dict[str, Any] = field(default_factory=dict)  # where the compute backend answered, when it did

    def answer(self, clients: Callable[[], Any], model_id: str, kind: str, label: str, **options: Any) -> None:
        options.setdefault("checkpoint_id", None)
        self.stats[model_id] = answer_model(
            self.context,
            self.lake,
            self.prompts,
            clients,
            self.params,
            model_id=model_id,
            model_kind=kind,
            model_label=label,
            lineage=self.lineage,
            **options,
        )

    def served(self, server: Any) -> ChatClient:
        return ChatClient(
            base_url=server.base_url,
            model=server.model_name,
            api_key="local",
            max_concurrency=self.max_concurrency,
            timeout_s=LOCAL_TIMEOUT_S,  # a request waits for the batches ahead of it
        )

    def base(self, checkpoint: dict[str, Any]) -> None:
        """The checkpoint's untrained base model, where it is a local pretrained model."""
        base_model = checkpoint.get("base_model")
        folder = base_model_folder(base_model)
        if folder is None:
            self.context.log.info(f"no base-model row: {base_model!r} is not a local pretrained model")
            return
        self.answer(
            lambda: client_maker(self.served, server=LocalModelServer(folder)),
            f"base:{base_model}",
            "base",
            f"base ({folder.name}, untrained student)",
            price=FREE,
        )

    def checkpoint(self, checkpoint: dict[str, Any], compute: Any = None) -> None:
        """The trained checkpoint, served here, or answered on `compute` when given."""
        ckpt_id = checkpoint["checkpoint_id"]
        label = f"round {checkpoint.get('round', 0)} student ({checkpoint.get('preset')})"

        def on_compute(todo: pl.DataFrame) -> pl.DataFrame:
            spec = {
                "model_id": ckpt_id,
                "model_label": label,
                "checkpoint_id": ckpt_id,
                "temperature": self.params.temperature,
                "top_p": self.params.top_p,
                "max_tokens": self.params.max_tokens,
                "max_concurrency": self.max_concurrency,
            }
            rows, where = answer_on_compute(
                compute,
                todo,
                checkpoint_uri=checkpoint["uri"],
                spec=spec,
                run_id=self.context.run.run_id,
                log=self.context.log,
            )
            self.ran.update(where)
            return rows

        self.answer(
            lambda: client_maker(self.served, server=serve_checkpoint(checkpoint["uri"])),
            ckpt_id,
            "checkpoint",
            label,
            checkpoint_id=ckpt_id,
            price=FREE,
            answer_elsewhere=on_compute if compute is not None else None,
        )

    def teacher(self, teacher: TeacherResource) -> None:
        """The teacher as it is asked for data (its worked examples in context), at this run's decoding."""
        shots = teacher.worked_examples
        decoding = "greedy" if self.params.temperature == 0 else f"T={self.params.temperature}"
        self.answer(
            lambda: client_maker(lambda _: teacher.client(self.context.log)),
            f"teacher:{teacher.model_id}:shots={shots}",
            "teacher",
            teacher.label(decoding),
            price=teacher.price(),
            shots=worked_example if shots else None,
        )

    def external(self, base_url: str, model: str, api_key_env: str | None, price: list[float] | None) -> None:
        """An OpenAI-compatible reference model, its key read from the env var named."""
        key = os.environ.get(api_key_env) if api_key_env else None
        concurrency = min(self.max_concurrency, REMOTE_CONCURRENCY)
        self.answer(
            lambda: client_maker(
                lambda _: ChatClient(base_url=base_url, model=model, api_key=key or "none", max_concurrency=concurrency)
            ),
            model,
            "external",
            model,
            price=(price[0], price[1]) if price else None,
        )
