"""The trainer program: stage an SFT snapshot, fine-tune a student with TRL's SFTTrainer, save safetensors.

Runs the same on this machine (a subprocess of the `local` compute backend) and on a GPU node (SkyPilot);
it never imports Dagster. Rows are conversational prompt-completion pairs (system + user → assistant), so
TRL applies the chat template, puts the loss on the completion only, and the completion ends with the
template's end-of-turn token `<|im_end|>`, which is also the tokenizer's EOS: the student learns to stop.
Batches are padded to their longest row, never to `max_seq_len`.

Output folder (local, or uploaded to s3:// at each checkpoint and at the end):

    model.safetensors, config.json, generation_config.json   the student (LoRA merged in: plain from_pretrained)
    tokenizer.json, tokenizer_config.json, chat_template.jinja
    adapter/                                                 the LoRA adapter alone (LoRA runs)
    checkpoint-N/                                            resumable checkpoints (latest `save_total_limit`)
    metrics.json, data_manifest.json, run.json               what trained, on which rows, how fast
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nexa_assets.train import storage
from nexa_assets.train.config import TrainConfig
from nexa_assets.train.data import ids_digest, load_staged, split_messages, stage_snapshot
from nexa_assets.train.metrics import run_metrics
from nexa_assets.train.presets import LOCAL_SMOLLM2, SCRATCH_LLAMA

METRICS_FILE = "metrics.json"
MANIFEST_FILE = "data_manifest.json"
RUN_FILE = "run.json"
METRICS_MARKER = "NEXA_METRICS "  # the last stdout line of the CLI: this prefix, then metrics.json on one line
STAGE_ENV = "NEXA_STAGE_DIR"
KEY_COLUMN = "example_id"

Log = Callable[[str], None]


class TrainError(RuntimeError):
    """The run cannot start or finish (bad data, an output folder holding another run, ...)."""


# -------------------------------------------------------------------------------------- the student


def resolve_source(source: str) -> str:
    """A loadable folder or hub id for a preset's `model` / `tokenizer` source."""
    if source == LOCAL_SMOLLM2:
        from nexa_resources.local_model import ensure_local_model

        return str(ensure_local_model())
    if source.startswith(("local:", "scratch:")):
        raise TrainError(f"{source!r} is not a loadable source here (known: {LOCAL_SMOLLM2}, a folder or a hub id)")
    return source


def load_tokenizer(config: TrainConfig) -> Any:
    from transformers import AutoTokenizer

    source = config.base_model or config.student.tokenizer
    tokenizer = AutoTokenizer.from_pretrained(resolve_source(source))
    if tokenizer.chat_template is None:
        raise TrainError(f"the tokenizer of {source!r} has no chat template; SFT rows need one")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(config: TrainConfig, tokenizer: Any, cuda: bool) -> Any:
    """The student: a seeded Llama built from the preset's architecture, or pretrained safetensors weights."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    source = config.model_source
    if source == SCRATCH_LLAMA:
        arch = LlamaConfig(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **config.student.architecture,
        )
        torch.manual_seed(config.seed)
        model = AutoModelForCausalLM.from_config(arch)
    else:
        # LoRA on a GPU keeps the frozen base in bf16; everything else trains fp32 master weights (bf16 autocast).
        dtype = torch.bfloat16 if (cuda and config.use_lora and config.use_bf16) else torch.float32
        model = AutoModelForCausalLM.from_pretrained(resolve_source(source), dtype=dtype, use_safetensors=True)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def chat_dataset(rows: Any, kd_rows: list[int] | None = None) -> Any:
    """A datasets.Dataset in TRL's conversational prompt-completion form from sft/examples rows (with KD, each
    row's index into the teacher probabilities, -1 for none)."""
    from datasets import Dataset

    pairs = [split_messages(m) for m in rows["messages"].to_list()]
    data: dict[str, Any] = {"prompt": [p for p, _ in pairs], "completion": [c for _, c in pairs]}
    if kd_rows is not None:
        from nexa_assets.train.kd import KD_ROW

        data[KD_ROW] = kd_rows
    return Dataset.from_dict(data)


def _resolve_kd(config: TrainConfig, sft_uri: str, storage_options: dict[str, str] | None) -> TrainConfig:
    """The config with the probability table's URI and exact version filled in (the latest when unset)."""
    from dataclasses import replace

    from deltalake import DeltaTable

    from nexa_assets.train.data import storage_options_for
    from nexa_assets.train.kd import default_logprobs_uri

    uri = config.logprobs_uri or default_logprobs_uri(sft_uri)
    options = storage_options if storage_options is not None else storage_options_for(uri)
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        raise TrainError(
            f"distill_loss=kd reads teacher probabilities from {uri}, which is not a Delta table: materialize "
            "distill/logprobs first (docs/distill.md), or set distill_loss: none"
        )
    version = config.logprobs_version
    if version is None:
        version = DeltaTable(uri, storage_options=options).version()
    return replace(config, logprobs_uri=uri, logprobs_version=int(version))


def _kd_teacher(config: TrainConfig, train_rows: Any, tokenizer: Any, storage_options: dict[str, str] | None,
                log: Log) -> tuple[list[int], list[Any], int, dict[str, Any]]:
    """(kd_row per train row, teacher rows, top-k, summary) from the probability table at its version, joined
    to the train rows by request_id; fails at once when its tokenizer is not the student's."""
    from nexa_assets.distill.logprobs import tokenizer_identity
    from nexa_assets.train.data import read_rows
    from nexa_assets.train.kd import TokenizerMismatch, check_tokenizer, teacher_rows

    assert config.logprobs_uri is not None and config.logprobs_version is not None
    if "request_id" not in train_rows.columns:
        raise TrainError("distill_loss=kd joins SFT rows to teacher probabilities by request_id; the table has none")
    ids = [str(r) for r in train_rows["request_id"].to_list()]
    table = read_rows(config.logprobs_uri, config.logprobs_version, storage_options=storage_options)
    table = table.filter(table["request_id"].is_in(ids))
    try:
        check_tokenizer(table["tokenizer"].to_list(), table["tokenizer_name"].to_list(),
                        tokenizer_identity(tokenizer), f"{config.preset} ({Path(str(tokenizer.name_or_path)).name})")
    except TokenizerMismatch as exc:
        raise TrainError(str(exc)) from None
    by_request = teacher_rows(table, ids)
    teacher = list(by_request.values())
    index = {rid: i for i, rid in enumerate(by_request)}
    kd_rows = [index.get(rid, -1) for rid in ids]
    top_k = int(table["top_k"].max()) if table.height else 1
    covered = sum(r >= 0 for r in kd_rows)
    if not covered:
        raise TrainError(
            f"distill_loss=kd: none of the {len(ids)} train rows has teacher probabilities in "
            f"{config.logprobs_uri}@v{config.logprobs_version}; materialize distill/logprobs with top_k set "
            "(docs/distill.md), or set distill_loss: none"
        )
    log(f"kd: {covered}/{len(ids)} train rows have teacher probabilities ({table.height} positions, top-{top_k}) "
        f"from {config.logprobs_uri}@v{config.logprobs_version}")
    summary = {"rows_with_teacher": covered, "teacher_positions": table.height, "top_k": top_k}
    return kd_rows, teacher, top_k, summary


# ----------------------------------------------------------------------------------------- training


def _progress_callback(log: Log, upload: Callable[[Path], None] | None) -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """One log line per logged step (loss, lr, tokens/s); uploads each saved checkpoint when remote."""

        def __init__(self) -> None:
            self.last: tuple[float, int] | None = None

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self.last = (time.perf_counter(), state.num_input_tokens_seen)

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if not logs or "loss" not in logs:
                return
            now, tokens = time.perf_counter(), state.num_input_tokens_seen
            rate = ""
            if self.last is not None and now > self.last[0]:
                rate = f" tok/s {(tokens - self.last[1]) / (now - self.last[0]):.0f}"
            self.last = (now, tokens)
            log(
                f"step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f} "
                f"lr {logs.get('learning_rate', 0.0):.2e} tokens {tokens}{rate}"
                + (f" kd_kl {logs['kd_kl']:.4f}" if "kd_kl" in logs else "")
            )

        def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            log(f"saved {folder.name}")
            if upload is not None:
                upload(folder)

    return Progress()


def _sft_args(config: TrainConfig, workdir: Path, cuda: bool) -> Any:
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(workdir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a fraction of the steps
        weight_decay=config.weight_decay,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy="no",  # val_loss is computed once at the end
        bf16=config.use_bf16,
        use_cpu=not cuda,
        seed=config.seed,
        data_seed=config.seed,
        max_length=config.max_seq_len,
        completion_only_loss=True,
        packing=config.packing,
        activation_checkpointing=config.gradient_checkpointing,  # TRL turns it on by default; slow for small models
        include_num_input_tokens_seen="non_padding",  # kept in trainer_state.json, so it survives a resume
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
        log_level="warning",
    )


def _check_run(workdir: Path, run: dict[str, Any]) -> None:
    """Refuse to resume an output folder that holds a run on other data or another config."""
    path = workdir / RUN_FILE
    if path.exists():
        before = json.loads(path.read_text())
        if before != run:
            changed = sorted(k for k in set(before) | set(run) if before.get(k) != run.get(k))
            raise TrainError(
                f"{workdir} holds a run with different {', '.join(changed)}; train into a fresh output folder"
            )
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run, indent=2, sort_keys=True))


def _stage_rows(
    sft_uri: str, sft_version: int, config: TrainConfig, stage_dir: Path, storage_options: dict[str, str] | None,
    workdir: Path, log: Log,
) -> tuple[Any, Any, dict[str, Any]]:
    """Stage the exact snapshot to local disk and read the train/val rows back from it only."""
    manifest = stage_snapshot(sft_uri, sft_version, stage_dir, storage_options)
    log(f"staged {sft_uri}@v{sft_version}: {manifest['rows']} rows, sha256 {manifest['sha256'][:12]}"
        f"{' (reused)' if manifest['reused'] else ''}")
    train_rows = load_staged(manifest, "train")
    val_rows = load_staged(manifest, config.eval_split) if config.eval_split else train_rows.clear()
    if train_rows.is_empty():
        raise TrainError(f"{sft_uri}@v{sft_version} has no split='train' rows to train on")
    train_rows, upweighted = weight_newest_round(train_rows, config.newest_round_weight)
    if upweighted:
        log(f"{upweighted} rows of the newest round appear {config.newest_round_weight}× per epoch")
    ids = train_rows[KEY_COLUMN].to_list() if KEY_COLUMN in train_rows.columns else []
    data_manifest = {**manifest, "train_rows": train_rows.height, "val_rows": val_rows.height,
                     "newest_round_rows_upweighted": upweighted,
                     "train_ids_sha256": ids_digest(ids), "train_ids": ids}
    (workdir / MANIFEST_FILE).write_text(json.dumps(data_manifest, indent=2))
    return train_rows, val_rows, data_manifest


def weight_newest_round(rows: Any, weight: int) -> tuple[Any, int]:
    """The rows with those of the newest `round` repeated `weight` times in all, and how many those are;
    unchanged when the table has one round (or no round column) or weight is 1."""
    import polars as pl

    if weight <= 1 or "round" not in rows.columns or rows["round"].n_unique() < 2:
        return rows, 0
    newest = rows.filter(pl.col("round") == rows["round"].max())
    return pl.concat([rows, *[newest] * (weight - 1)]), newest.height


def _lora_config(config: TrainConfig) -> Any:
    if not config.use_lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.student.lora_target_modules),
        task_type="CAUSAL_LM",
    )


def _uploader(output: str) -> tuple[Any, Callable[[Path], None] | None]:
    """(an S3 client, a function uploading one checkpoint folder) for an s3:// output; (None, None) for a local one."""
    if not storage.is_remote(output):
        return None, None
    client = storage.s3_client()

    def upload(folder: Path) -> None:
        storage.upload_dir(folder, f"{output.rstrip('/')}/{folder.name}", client=client)

    return client, upload


def _resume_from(workdir: Path, output: str, client: Any) -> Path | None:
    """The latest complete checkpoint here, else the one downloaded from a remote output; None: a fresh run."""
    resume = storage.latest_complete_checkpoint(workdir)
    if resume is None and client is not None and storage.download_latest_checkpoint(output, workdir, client=client):
        resume = storage.latest_complete_checkpoint(workdir)
    return resume


def _sft_trainer(config: TrainConfig, model: Any, tokenizer: Any, rows: tuple[Any, Any], kd: Any, workdir: Path,
                 cuda: bool, callback: Any) -> Any:
    """TRL's trainer with the completion-only loss, or its KD subclass when `kd` (from _kd_teacher) is set."""
    from transformers import PrinterCallback

    from nexa_assets.train.completion_loss import CompletionLossSFTTrainer

    train_rows, val_rows = rows
    trainer_kwargs: dict[str, Any] = dict(
        model=model,
        args=_sft_args(config, workdir, cuda),
        train_dataset=chat_dataset(train_rows, kd[0] if kd else None),
        eval_dataset=chat_dataset(val_rows) if val_rows.height else None,
        processing_class=tokenizer,
        peft_config=_lora_config(config),
        callbacks=[callback],
    )
    if kd is not None:
        from nexa_assets.train.kd import KDSFTTrainer

        trainer = KDSFTTrainer(**trainer_kwargs, kd_temperature=config.kd_temperature, kd_weight=config.kd_weight,
                               teacher=kd[1], top_k=kd[2])
    else:
        trainer = CompletionLossSFTTrainer(**trainer_kwargs)
    trainer.remove_callback(PrinterCallback)  # our Progress callback prints one line per step instead
    return trainer


def _val_loss(trainer: Any, val_rows: Any, log: Log) -> float | None:
    """The loss on the val rows; None without val rows, or when none has a completion token left."""
    if not val_rows.height:
        return None
    # No eval_loss comes back when every val row was cut before its answer (no completion tokens).
    evaluated = trainer.evaluate().get("eval_loss")
    val_loss = float(evaluated) if evaluated is not None else None
    log(f"val_loss {val_loss:.4f} on {val_rows.height} rows" if val_loss is not None
        else f"no val loss: the {val_rows.height} val rows have no completion tokens within max_seq_len")
    return val_loss


def _tokens_before(resume: Path | None, log: Log) -> int:
    """Tokens the run had seen at the checkpoint it resumes from (0 for a fresh run)."""
    if resume is None:
        return 0
    log(f"resuming from {resume.name}")
    return json.loads((resume / "trainer_state.json").read_text()).get("num_input_tokens_seen", 0)


def _log_start(trainer: Any, config: TrainConfig, rows: int, cuda: bool, log: Log) -> tuple[int, int]:
    """(parameters, trainable parameters) of the model about to train, logged with where it trains."""
    params = sum(p.numel() for p in trainer.model.parameters())
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    log(f"training {config.preset} ({params / 1e6:.1f}M params, {trainable / 1e6:.2f}M trainable) on "
        f"{rows} rows, device {'cuda' if cuda else 'cpu'}, bf16 {config.use_bf16}")
    return params, trainable


def train(
    *,
    sft_uri: str,
    sft_version: int,
    output: str,
    config: TrainConfig,
    storage_options: dict[str, str] | None = None,
    log: Log = print,
    stage_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train one student on sft/examples at `sft_version`; resume from the output's latest checkpoint. Returns
    the metrics (also written to `<output>/metrics.json`)."""
    started, started_at = time.perf_counter(), datetime.now(timezone.utc)
    import torch
    import transformers

    _quiet(transformers)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    cuda = torch.cuda.is_available()
    workdir = storage.local_workdir(output)
    if config.distill_loss == "kd":
        config = _resolve_kd(config, sft_uri, storage_options)
    _check_run(workdir, {"sft_uri": sft_uri, "sft_version": int(sft_version), "config": config.resolved()})
    stage = Path(stage_dir or os.environ.get(STAGE_ENV) or Path(tempfile.gettempdir()) / "nexa-stage")
    train_rows, val_rows, data_manifest = _stage_rows(
        sft_uri, sft_version, config, stage, storage_options, workdir, log
    )

    tokenizer = load_tokenizer(config)
    kd = _kd_teacher(config, train_rows, tokenizer, storage_options, log) if config.distill_loss == "kd" else None
    model = load_model(config, tokenizer, cuda)
    client, upload = _uploader(output)
    resume = _resume_from(workdir, output, client)
    trainer = _sft_trainer(config, model, tokenizer, (train_rows, val_rows), kd, workdir, cuda,
                           _progress_callback(log, upload))
    tokens_before = _tokens_before(resume, log)
    params = _log_start(trainer, config, train_rows.height, cuda, log)

    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    val_loss = _val_loss(trainer, val_rows, log)
    _save_final(trainer, tokenizer, workdir, config)
    metrics = run_metrics(
        config, trainer, sft_uri=sft_uri, sft_version=sft_version, output=output, started_at=started_at,
        rows=(train_rows.height, val_rows.height), manifest=data_manifest, params=params,
        val_loss=val_loss, runtime=float(result.metrics.get("train_runtime", 0.0)), resume=resume,
        tokens_before=tokens_before, kd=kd, cuda=cuda,
    )
    metrics["wall_s"] = round(time.perf_counter() - started, 3)
    (workdir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    if client is not None:
        count = storage.upload_dir(workdir, output, client=client)
        log(f"uploaded {count} files to {output}")
    return metrics


def _quiet(transformers: Any) -> None:
    """No progress bars or info chatter: the log stream is one line per step."""
    import datasets

    transformers.logging.set_verbosity_warning()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_warning()


def _save_final(trainer: Any, tokenizer: Any, workdir: Path, config: TrainConfig) -> None:
    """The student as plain safetensors (+ tokenizer and chat template); LoRA merged, its adapter kept apart."""
    import torch

    model = trainer.accelerator.unwrap_model(trainer.model)
    if config.use_lora:
        model.save_pretrained(workdir / "adapter")
        model = model.merge_and_unload()
    model.config.use_cache = True
    if config.use_bf16:
        model = model.to(torch.bfloat16)
    model.save_pretrained(workdir)
    tokenizer.save_pretrained(workdir)
