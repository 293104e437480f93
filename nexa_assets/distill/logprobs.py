"""Teacher token probabilities (distill/logprobs): the top-k next-token log-probabilities of each answer token.

One row per (request_id, position), position p being the p-th token of the answer as the chat template
tokenizes it (the completion tokens a student is trained on, end-of-turn included). Rows come from an
OpenAI-compatible endpoint asked with `logprobs`/`top_logprobs` (`endpoint_rows`), or, for the local teacher
(whose server returns none), from scoring the chosen answers in-process with the same model (`score_answers`).
`tokenizer` names the vocabulary the token ids belong to (`tokenizer_identity`): KD needs the student's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from itertools import accumulate, chain
from pathlib import Path
from typing import Any

import polars as pl

from nexa_resources.llm_client import gc_paused
from nexa_resources.tables.distill import LOGPROBS_SCHEMA

LOGPROBS_TABLE = "distill/logprobs"
MAX_TOP_K = 20  # OpenAI's limit for top_logprobs


def tokenizer_identity(tokenizer: Any) -> str:
    """`vocab<N>-<sha256[:12]>` of the token → id map (special tokens included): two tokenizers with the same
    identity give every token the same id, whatever folder or hub id they were loaded from."""
    vocab = tokenizer.get_vocab()
    blob = json.dumps(sorted(vocab.items(), key=lambda kv: kv[1]), ensure_ascii=False, separators=(",", ":"))
    return f"vocab{len(vocab)}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def tokenizer_name(tokenizer: Any) -> str:
    return Path(str(getattr(tokenizer, "name_or_path", "") or "unknown")).name


def empty_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=LOGPROBS_SCHEMA)


# ------------------------------------------------------------------------------------------ endpoints


def token_lookup(tokenizer: Any) -> dict[str, int]:
    """Token text → id for endpoints that return text (OpenAI, vLLM): each id's decoded text, ambiguous texts
    left out. vLLM's `token_id:<n>` form is understood by `token_id` directly."""
    seen: dict[str, int] = {}
    ambiguous: set[str] = set()
    for i in range(len(tokenizer)):
        text = tokenizer.decode([i])
        if text in seen:
            ambiguous.add(text)
        seen[text] = i
    return {t: i for t, i in seen.items() if t not in ambiguous}


def token_id(text: str, lookup: Mapping[str, int] | None) -> int | None:
    found = _id_form(text)
    return found if found is not None or lookup is None else lookup.get(text)


def endpoint_rows(
    rows: Sequence[Mapping[str, Any]],
    *,
    teacher_model: str,
    top_k: int,
    tokenizer: str,
    name: str,
    lookup: Mapping[str, int] | None = None,
) -> pl.DataFrame:
    """distill/logprobs rows of collected answers that carry `logprobs` (ChatResult.logprobs, columns per answer
    token). Hundreds of token rows an answer, k alternatives each: the list columns are built from flat values
    and offsets (Arrow), which costs a fraction of converting nested Python lists."""
    import pyarrow as pa

    with gc_paused():
        flat, nested = _endpoint_columns(rows, top_k, lookup)
    if not flat["request_id"]:
        return empty_frame()
    offsets = pa.array([0, *accumulate(nested.pop("counts"))], pa.int32())
    lists = {
        column: pa.ListArray.from_arrays(offsets, pa.array(values, _ARROW[column]))
        for column, values in nested.items()
    }
    frame = pl.DataFrame(flat, schema={k: LOGPROBS_SCHEMA[k] for k in flat}).with_columns(
        pl.from_arrow(pa.table(lists)).cast({k: LOGPROBS_SCHEMA[k] for k in lists})
    )
    constant = {"top_k": top_k, "tokenizer": tokenizer, "tokenizer_name": name, "teacher_model": teacher_model,
                "source": "endpoint"}
    return frame.with_columns(pl.lit(v, LOGPROBS_SCHEMA[k]).alias(k) for k, v in constant.items()).select(
        list(LOGPROBS_SCHEMA))


_ARROW = {"top_tokens": "string", "top_token_ids": "int64", "top_logprobs": "float64"}


def _endpoint_columns(
    rows: Sequence[Mapping[str, Any]], top_k: int, lookup: Mapping[str, int] | None
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """(per-token columns, the top-k columns flattened with their per-token counts)."""
    flat: dict[str, list[Any]] = {c: [] for c in ("request_id", "position", "token", "token_id", "logprob")}
    nested: dict[str, list[Any]] = {c: [] for c in ("top_tokens", "top_token_ids", "top_logprobs", "counts")}
    ids = (lambda text: token_id(text, lookup)) if lookup is not None else _id_form
    for row in rows:
        answer = row.get("logprobs")
        if not answer or not answer["token"] or row.get("error") is not None:
            continue
        n = len(answer["token"])
        tops = [top[:top_k] for top in answer["top_tokens"]]
        flat["request_id"] += [row["request_id"]] * n
        flat["position"] += range(n)
        flat["token"] += answer["token"]
        flat["token_id"] += map(ids, answer["token"])
        flat["logprob"] += answer["logprob"]
        top_tokens = list(chain.from_iterable(tops))
        nested["top_tokens"] += top_tokens
        nested["top_token_ids"] += map(ids, top_tokens)
        nested["top_logprobs"] += chain.from_iterable(lps[:top_k] for lps in answer["top_logprobs"])
        nested["counts"] += map(len, tops)
    return flat, nested


def _id_form(text: str) -> int | None:
    """vLLM's `token_id:<n>` token form, the only one readable without a tokenizer."""
    return int(text[9:]) if text.startswith("token_id:") and text[9:].isdigit() else None


# ------------------------------------------------------------------------------- the local teacher


def answer_span(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> tuple[list[int], int]:
    """(token ids of the whole chat, index of the first answer token): the answer starts where the prompt with
    the generation prompt and the full chat diverge, as TRL's SFTTrainer labels it."""
    prompt = [dict(m) for m in messages[:-1]]
    prompt_ids = _ids(tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True))
    full_ids = _ids(tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=True))
    start = 0
    while start < min(len(prompt_ids), len(full_ids)) and prompt_ids[start] == full_ids[start]:
        start += 1
    return full_ids, start


def _ids(encoded: Any) -> list[int]:
    if isinstance(encoded, Mapping) or hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    return list(encoded)


def score_answers(
    answers: Sequence[Mapping[str, Any]],
    model: Any,
    tokenizer: Any,
    *,
    top_k: int,
    teacher_model: str,
    max_len: int = 2048,
) -> pl.DataFrame:
    """Score answers with a causal LM in-process: for each answer token, the top-k of the log-softmax at the
    position that predicts it. Each answer is a mapping with `request_id` and `messages` (system, user[, worked
    examples], assistant answer last); positions count answer tokens only, whatever context precedes them."""
    import torch

    if not 1 <= top_k <= MAX_TOP_K:
        raise ValueError(f"top_k={top_k}: expected 1..{MAX_TOP_K}")
    identity, name = tokenizer_identity(tokenizer), tokenizer_name(tokenizer)
    texts: dict[int, str] = {}

    def text(token: int) -> str:
        if token not in texts:
            texts[token] = tokenizer.decode([token])
        return texts[token]

    out: list[dict[str, Any]] = []
    model.eval()
    for answer in answers:
        ids, start = answer_span(tokenizer, answer["messages"])
        ids = ids[:max_len]
        if start >= len(ids) or start == 0:
            continue
        keep = len(ids) - start + 1  # the vocabulary projection only where an answer token is predicted
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids]), logits_to_keep=keep).logits[0].float()
        logp = torch.log_softmax(logits[:-1], dim=-1)  # row j predicts ids[start + j]
        top_lp, top_ids = logp.topk(top_k, dim=-1)
        targets = torch.tensor(ids[start:])
        chosen = logp.gather(1, targets[:, None])[:, 0]
        for p in range(len(targets)):
            tid = int(targets[p])
            tops = top_ids[p].tolist()
            out.append(
                {
                    "request_id": answer["request_id"],
                    "position": p,
                    "token": text(tid),
                    "token_id": tid,
                    "logprob": float(chosen[p]),
                    "top_tokens": [text(t) for t in tops],
                    "top_token_ids": tops,
                    "top_logprobs": [float(v) for v in top_lp[p].tolist()],
                    "top_k": top_k,
                    "tokenizer": identity,
                    "tokenizer_name": name,
                    "teacher_model": teacher_model,
                    "source": "scored",
                }
            )
    return pl.DataFrame(out, schema=LOGPROBS_SCHEMA) if out else empty_frame()


def load_local_teacher() -> tuple[Any, Any]:
    """(model, tokenizer) of the local teacher's weights (SmolLM2-135M-Instruct), float32 for scoring on a CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nexa_resources.local_model import ensure_local_model

    folder = ensure_local_model()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
    return model, tokenizer
