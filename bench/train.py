"""Benchmark the trainer against a bare torch training loop, side by side in one run.

    .venv/bin/python bench/train.py [--rows 256] [--steps 20] [--batch-size 8] [--repeat 3] [--preset tiny]

The contenders train the same student (the `tiny` preset: same architecture, same seed, so the same
initial weights) on the same batches with the same AdamW settings, bf16 autocast and gradient clipping:

- trainer: `nexa_assets.train.trainer` as the CLI runs it: TRL's SFTTrainer with completion-only loss,
  its data collator, logging every step; checkpoints off (saving is I/O, not training speed);
- bare: `model(**batch).loss.backward(); clip; optimizer.step()` over the very batches the trainer's
  data loader yields (collected once beforehand, so the bare loop pays no data cost);
- bare-compact: the same bare loop with the trainer's loss function (`completion_loss`: logits only for
  completion positions), which isolates what the Trainer machinery itself costs.

Tokens/s counts non-padding tokens (prompt + completion) over the timed steps, excluding the first step
of each run (warm-up). Each repetition runs each contender in a fresh child process, alternating the
order, so peak memory (`ru_maxrss` of the child) belongs to one contender; ratios are ratios of the
medians over repetitions. CPU seconds per token are printed too, a steadier view on a shared machine.
Target: trainer / bare >= 0.8 (trainer / bare-compact is printed too); exits 1 if it is missed. The data
is a synthetic sft/examples table (seed-pack prompts, canned structured answers) in a temporary lake.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET = 0.8
KINDS = ("trainer", "bare", "bare-compact")


# ------------------------------------------------------------------------------------------- data


def write_table(root: Path, rows: int) -> tuple[str, int]:
    """An sft/examples table of `rows` synthetic chat rows; returns (uri, version)."""
    import polars as pl

    from nexa_assets.distill.task import format_messages
    from nexa_core.text import content_hash, hash_fraction
    from nexa_resources.lake import LakeResource, Lineage
    from nexa_resources.tables.sft import EXAMPLE_SCHEMA
    from nexa_testing.scripted_server import answer_for

    seed = Path(__file__).resolve().parents[1] / "nexa_assets" / "raw" / "data" / "seed_pack.jsonl"
    prompts = [json.loads(line) for line in seed.read_text().splitlines() if line.strip()]
    out = []
    for i in range(rows):
        row = dict(prompts[i % len(prompts)])
        row.setdefault("context", None)
        system, user = format_messages(row)
        cue = " hypotheses" if row["task_type"] == "hypothesis" else " method"
        completion = answer_for(row["instruction"] + cue)
        pid = content_hash(row["instruction"], i)
        out.append(
            {
                "example_id": content_hash(pid, "bench"),
                "prompt_id": pid,
                "request_id": content_hash(pid, "request"),
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": completion},
                ],
                "prompt": user,
                "completion": completion,
                "domain": row["domain"],
                "task_type": row["task_type"],
                "split": "val" if hash_fraction(pid) < 0.1 else "train",
                "judge_mean": 4.0,
            }
        )
    lake = LakeResource(root=str(root))
    written = lake.write("sft/examples", pl.DataFrame(out, schema=EXAMPLE_SCHEMA), mode="overwrite",
                         lineage=Lineage(run_id="bench"))
    return lake.uri("sft/examples"), written.version


# ---------------------------------------------------------------------------------------- workers


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _make_trainer(args: argparse.Namespace, workdir: Path) -> Any:
    """An SFTTrainer set up exactly as nexa_assets.train.trainer.train sets it up (checkpoints off)."""
    import transformers
    from transformers import PrinterCallback

    from nexa_assets.train import trainer as nt
    from nexa_assets.train.completion_loss import CompletionLossSFTTrainer
    from nexa_assets.train.config import TrainConfig
    from nexa_assets.train.data import load_staged, stage_snapshot

    nt._quiet(transformers)
    config = TrainConfig(preset=args.preset, max_steps=args.steps, batch_size=args.batch_size,
                         save_steps=10**6, warmup_ratio=0.0, lr_scheduler="constant", seed=0)
    manifest = stage_snapshot(args.uri, args.version, workdir / "stage")
    rows = load_staged(manifest, "train")
    tokenizer = nt.load_tokenizer(config)
    model = nt.load_model(config, tokenizer, cuda=False)
    sft_args = nt._sft_args(config, workdir / "out", cuda=False)
    sft_args.save_strategy = "no"
    trainer = CompletionLossSFTTrainer(
        model=model, args=sft_args, train_dataset=nt.chat_dataset(rows), processing_class=tokenizer
    )
    trainer.remove_callback(PrinterCallback)
    return trainer, config


def _timer_callback(marks: list[tuple[float, float, int]]) -> Any:
    from transformers import TrainerCallback

    class Marks(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            marks.append((time.perf_counter(), time.process_time(), state.num_input_tokens_seen))

    return Marks()


def worker(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    workdir = Path(tempfile.mkdtemp(prefix="nexa-bench-train-"))
    trainer, config = _make_trainer(args, workdir)
    marks: list[tuple[float, float, int]] = []
    if args.worker == "trainer":
        trainer.add_callback(_timer_callback(marks))
        rss_before = _rss_mb()
        trainer.train()
    else:
        from nexa_assets.train.completion_loss import completion_loss

        batches = list(trainer.get_train_dataloader())  # the same batches the trainer trains on
        model = trainer.model
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
        rss_before = _rss_mb()
        tokens, step = 0, 0
        while step < args.steps:
            for batch in batches:
                if step >= args.steps:
                    break
                inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.use_bf16):
                    if args.worker == "bare-compact":
                        loss = completion_loss(model, inputs)
                    else:
                        loss = model(**inputs).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                tokens += int(batch["attention_mask"].sum())
                marks.append((time.perf_counter(), time.process_time(), tokens))
    (t0, c0, k0), (t1, c1, k1) = marks[0], marks[-1]  # from the end of step 1: warm-up excluded
    return {
        "worker": args.worker,
        "steps": len(marks),
        "tokens": k1 - k0,
        "tokens_per_s": (k1 - k0) / (t1 - t0),
        "cpu_us_per_token": 1e6 * (c1 - c0) / (k1 - k0),
        "rss_before_mb": rss_before,
        "peak_rss_mb": _peak_mb(),
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------------------------- driver


def run_worker(kind: str, args: argparse.Namespace, uri: str, version: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", kind, "--uri", uri, "--version", str(version),
           "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--preset", args.preset]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--version", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    with tempfile.TemporaryDirectory(prefix="nexa-bench-") as tmp:
        uri, version = write_table(Path(tmp) / "lake", args.rows)
        results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        for rep in range(args.repeat):
            order = list(KINDS) if rep % 2 == 0 else list(reversed(KINDS))
            for kind in order:
                result = run_worker(kind, args, uri, version)
                results[kind].append(result)
                print(f"  rep {rep + 1} {kind:12s} {result['tokens_per_s']:8.0f} tok/s  "
                      f"{result['cpu_us_per_token']:7.0f} cpu-µs/token  peak RSS {result['peak_rss_mb']:.0f} MiB",
                      flush=True)

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in results[kind])

    ratio = med("trainer", "tokens_per_s") / med("bare", "tokens_per_s")
    cpu_ratio = med("bare", "cpu_us_per_token") / med("trainer", "cpu_us_per_token")
    overhead = med("trainer", "tokens_per_s") / med("bare-compact", "tokens_per_s")
    threads = results["trainer"][0]["threads"]
    print()
    print(f"bench/train.py: preset {args.preset}, batch {args.batch_size}, {args.steps} steps "
          f"(first excluded), {args.rows} rows, {threads} torch threads, median of {args.repeat}")
    header = f"{'contender':<13} {'tokens/s':>10} {'cpu µs/token':>13} {'peak RSS MiB':>13} {'RSS before':>11}"
    print(f"{header} {'Δ MiB':>7}")
    for kind in KINDS:
        peak, before = med(kind, "peak_rss_mb"), med(kind, "rss_before_mb")
        print(f"{kind:<13} {med(kind, 'tokens_per_s'):>10.0f} {med(kind, 'cpu_us_per_token'):>13.0f} "
              f"{peak:>13.0f} {before:>11.0f} {peak - before:>7.0f}")
    verdict = "ok" if ratio >= TARGET else "MISSED"
    print(f"trainer / bare tokens/s: {ratio:.2f}x (target >= {TARGET}x) {verdict}; by CPU time {cpu_ratio:.2f}x")
    print(f"trainer / bare-compact tokens/s: {overhead:.2f}x (the Trainer machinery alone, same loss)")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
