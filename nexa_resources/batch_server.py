"""An OpenAI-compatible chat server for one local model folder that answers concurrent requests in batches.

`transformers serve` answers the local model one token step per request on a CPU (25–31 tokens/s on
2 cores, measured); one `generate` call over many requests shares each step's fixed cost, so the same
CPU writes 2–3× more tokens per second. Requests that arrive within `gather_ms` of each other (for at most
5 s) and share their sampling settings form one batch, up to `max_batch`.

Weights run in float32 on a CPU: bfloat16 matrix products without AVX512-BF16 are ~100× slower
(0.3 vs 46 GFLOPS measured on this project's 2-core machine). A request's `seed` seeds the batch it
lands in (the smallest seed of the batch), so answers are reproducible for the same batch, not alone.

    python -m nexa_resources.batch_server --model DIR --port 0     # prints "ready http://127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import functools
import asyncio
import inspect
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nexa_resources.prefix_attention import NAME as PREFIX_ATTENTION, SharedPrefix, register as register_prefix_attention

# A round's 128 teacher requests (32 prompts x best of 4) or a 96-prompt eval set fit one batch: split in two,
# each half ran to its own longest answer.
DEFAULT_MAX_BATCH = 128
DEFAULT_GATHER_MS = 500  # a batch closes once no request arrived for this long ...
MAX_GATHER_S = 5.0  # ... or this long after it started gathering
# Prompts that start with this many identical tokens share one computed prefix (system prompt + examples).
MIN_SHARED_PREFIX = 16
TOP_P_CANDIDATES = 1024
COMPACT_EVERY = 8  # drop finished rows from the batch once 1/8 of it has finished


@dataclass
class _Pending:
    messages: list[dict[str, str]]
    temperature: float
    top_p: float
    max_tokens: int
    seed: int | None
    repetition_penalty: float
    future: asyncio.Future[dict[str, Any]]
    arrived: float = field(default_factory=time.monotonic)

    @property
    def group(self) -> tuple[float, float, int, float]:
        return (self.temperature, self.top_p, self.max_tokens, self.repetition_penalty)


class BatchGenerator:
    """A causal LM and its tokenizer; `generate` answers a list of chats in one batched call."""

    def __init__(self, model_dir: str | Path, threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(self.device).eval()
        register_prefix_attention()
        self.model.set_attn_implementation(PREFIX_ATTENTION)
        # transformers 5.x renames forward's `past_key_values` to `cache` (the old name goes in 5.40).
        params = inspect.signature(self.model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"

    def generate(
        self,
        chats: list[list[dict[str, str]]],
        *,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None,
        repetition_penalty: float = 1.0,
    ) -> list[dict[str, Any]]:
        """One answer per chat: text, finish_reason ("stop" | "length"), prompt and completion token counts."""
        torch, tok = self.torch, self.tokenizer
        ids = [
            tok.apply_chat_template(c, tokenize=True, add_generation_prompt=True, return_dict=False) for c in chats
        ]
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            rows = self._decode(
                *self._prefill(ids, max_tokens), temperature, top_p, max_tokens, repetition_penalty
            )
        answers = []
        for tokens, prompt in zip(rows, ids):
            stop = bool(tokens) and tokens[-1] == tok.eos_token_id
            answers.append(
                {
                    "text": tok.decode(tokens[:-1] if stop else tokens, skip_special_tokens=True).strip(),
                    "finish_reason": "stop" if stop else "length",
                    "prompt_tokens": len(prompt),
                    "completion_tokens": len(tokens),
                }
            )
        return answers

    def _prefill(self, ids: list[list[int]], max_tokens: int) -> tuple[Any, SharedPrefix, Any, Any, Any]:
        """Every prompt run through the model: (own-token KV cache with room for the answers, the shared
        prefixes, next-token logits, own-token mask, last position) per row.

        Prompts that share a prefix (system prompt and worked example: ~330 of ~450 tokens here) have it
        computed and kept once per group (prefix_attention); identical prompts (best of n) have the rest
        computed once and copied. On a CPU the prompt costs as much as the answer.
        """
        from transformers import DynamicCache

        torch, pad = self.torch, self.tokenizer.pad_token_id
        distinct = list(dict.fromkeys(tuple(row) for row in ids))
        copy_of = torch.tensor([distinct.index(tuple(row)) for row in ids], device=self.device)
        unique = [list(row) for row in distinct]
        groups = _prefix_groups(unique, MIN_SHARED_PREFIX)
        by_row = {i: (g if prefix else -1, len(prefix)) for g, (prefix, members) in enumerate(groups) for i in members}
        layers = self.model.config.num_hidden_layers
        keys: list[list[Any]] = [[] for _ in range(layers)]
        values: list[list[Any]] = [[] for _ in range(layers)]
        for prefix, _ in groups:
            kv = DynamicCache()
            if prefix:
                self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True, **{self.cache_arg: kv})
            for layer in range(layers):
                keys[layer].append(kv.layers[layer].keys if prefix else None)
                values[layer].append(kv.layers[layer].values if prefix else None)
        shared = SharedPrefix(keys, values, torch.tensor([by_row[i][0] for i in range(len(unique))], device=self.device))
        suffixes = [row[by_row[i][1]:] for i, row in enumerate(unique)]
        longest = max(len(x) for x in suffixes)
        heads, dim = self._kv_shape()
        empty = torch.zeros((len(unique), heads, 0, dim), dtype=self.model.dtype, device=self.device)
        cache = DynamicCache()
        for _ in range(layers):
            cache.layers.append(_growing_layer()(empty, empty, room=longest + max_tokens))
        suffix = torch.tensor([[pad] * (longest - len(x)) + x for x in suffixes], device=self.device)
        mask = torch.tensor([[0] * (longest - len(x)) + [1] * len(x) for x in suffixes], device=self.device)
        starts = torch.tensor([by_row[i][1] for i in range(len(unique))], device=self.device)
        positions = (starts[:, None] + mask.cumsum(dim=1) - 1).clamp(min=0)
        logits = self.model(
            input_ids=suffix, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
            shared_prefix=shared, **{self.cache_arg: cache},
        ).logits[:, -1, :]
        if len(unique) < len(ids):
            cache.batch_select_indices(copy_of)
            shared.select(copy_of)
            logits, mask, positions = logits[copy_of], mask[copy_of], positions[copy_of]
        return cache, shared, logits, mask, positions[:, -1]

    def _kv_shape(self) -> tuple[int, int]:
        """(key/value heads, head dim) of the model's cache."""
        config = self.model.config
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return heads, dim

    def _decode(
        self, cache: Any, shared: SharedPrefix, logits: Any, mask: Any, position: Any, temperature: float,
        top_p: float, max_tokens: int, repetition_penalty: float = 1.0,
    ) -> list[list[int]]:
        """Token ids per row, up to and including EOS. Finished rows leave the batch (their KV cache rows are
        dropped, COMPACT_EVERY), so each step costs about the rows still writing; `generate` would carry them to the end.
        `repetition_penalty` (as in transformers, over the answer's own tokens) divides a positive logit of a
        token already written by it and multiplies a negative one."""
        torch, eos = self.torch, self.tokenizer.eos_token_id
        rows = logits.shape[0]
        out: list[list[int]] = [[] for _ in range(rows)]
        done = [False] * rows
        active = torch.arange(rows, device=logits.device)
        penalize = repetition_penalty != 1.0
        seen = torch.zeros_like(logits, dtype=torch.bool) if penalize else None
        for step in range(max_tokens):
            if seen is not None:
                logits = torch.where(
                    seen, torch.where(logits > 0, logits / repetition_penalty, logits * repetition_penalty), logits
                )
            chosen = _pick(torch, logits, temperature, top_p)
            if seen is not None:
                seen[torch.arange(chosen.numel(), device=chosen.device), chosen] = True
            for row, token in zip(active.tolist(), chosen.tolist()):
                if not done[row]:
                    out[row].append(token)
                    done[row] = token == eos
            running = torch.tensor([not done[row] for row in active.tolist()], device=logits.device).nonzero(as_tuple=True)[0]
            if running.numel() == 0 or step == max_tokens - 1:
                break
            # Dropping finished rows copies the whole cache, which costs about what a row costs in ~10 steps:
            # finished rows ride along (their tokens are ignored) until an eighth of the batch has finished.
            if (active.numel() - running.numel()) * COMPACT_EVERY >= active.numel():
                cache.batch_select_indices(running)
                shared.select(running)
                active, mask, chosen, position = active[running], mask[running], chosen[running], position[running]
                seen = seen[running] if seen is not None else None
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            position = position + 1
            logits = self.model(
                input_ids=chosen[:, None], attention_mask=mask, position_ids=position[:, None], use_cache=True,
                shared_prefix=shared, **{self.cache_arg: cache},
            ).logits[:, -1, :]
        return out


@functools.cache
def _growing_layer() -> type:
    """A transformers KV cache layer that writes each step's keys and values into room allocated up front.

    DynamicLayer concatenates the whole cache with the new token at every step: for 64 rows of ~700
    positions that copy moved more bytes per step than the model's weights.
    """
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def __init__(self, keys: Any, values: Any, room: int) -> None:
            super().__init__()
            batch, heads, length, dim = keys.shape
            self.device, self.length, self.is_initialized = keys.device, length, True
            self._keys = keys.new_empty((batch, heads, length + room, dim))
            self._values = values.new_empty((batch, heads, length + room, dim))
            self._keys[:, :, :length] = keys
            self._values[:, :, :length] = values
            self._view()

        def _view(self) -> None:
            self.keys = self._keys[:, :, : self.length]
            self.values = self._values[:, :, : self.length]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            end = self.length + key_states.shape[-2]
            if end > self._keys.shape[2]:
                raise RuntimeError(f"KV cache room exhausted: {end} > {self._keys.shape[2]} positions")
            self._keys[:, :, self.length : end] = key_states
            self._values[:, :, self.length : end] = value_states
            self.length = end
            self._view()
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def batch_select_indices(self, indices: Any) -> None:
            self._keys, self._values = self._keys[indices], self._values[indices]
            self._view()

    return GrowingLayer


def _prefix_groups(ids: list[list[int]], min_shared: int) -> list[tuple[list[int], list[int]]]:
    """(shared prefix, row indices) groups: rows whose prompts start with the same `min_shared`+ tokens share
    their longest common prefix (always shorter than each row); the others form one group with no prefix.

    In sorted order a row joins the group before it when that saves more prompt tokens than it costs: n rows
    sharing c tokens save n·c, against (n − 1)·p for the group's current prefix p (so prompts with one worked
    example keep it as their prefix instead of shrinking to the system prompt all prompts share)."""
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    groups: list[tuple[list[int], list[int]]] = []
    for i in order:
        if groups and groups[-1][0]:
            prefix, members = groups[-1]
            common = _common(prefix, ids[i])
            if common >= min_shared and len(members) * common >= (len(members) - 1) * len(prefix):
                groups[-1] = (prefix[:common], members + [i])
                continue
        groups.append((ids[i][: len(ids[i]) - 1], [i]))
    alone = [m for prefix, members in groups if len(members) == 1 or len(prefix) < min_shared for m in members]
    shared = [(p, m) for p, m in groups if len(m) > 1 and len(p) >= min_shared]
    return shared + ([([], alone)] if alone else [])


def _common(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b) - 1)
    for k in range(n):
        if a[k] != b[k]:
            return k
    return n


def _pick(torch: Any, logits: Any, temperature: float, top_p: float) -> Any:
    """The next token of each row: greedy at temperature 0, else nucleus sampling."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        # The nucleus almost always lies within the most likely few hundred tokens; sorting only those is
        # exact when they hold more than top_p of the mass (else the whole vocabulary is sorted).
        sorted_probs, order = probs.topk(min(TOP_P_CANDIDATES, probs.shape[-1]), dim=-1)
        if not bool((sorted_probs.sum(dim=-1) > top_p).all()):
            sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        return order.gather(-1, torch.multinomial(sorted_probs, 1)).squeeze(-1)
    return torch.multinomial(probs, 1).squeeze(-1)


class BatchApp:
    """The ASGI app: /v1/chat/completions (batched), /v1/models, /health."""

    def __init__(self, generator: BatchGenerator, model_name: str, max_batch: int, gather_ms: int) -> None:
        self.generator, self.model_name = generator, model_name
        self.max_batch, self.gather_s = max_batch, gather_ms / 1000
        self.queue: asyncio.Queue[_Pending] | None = None
        self.worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.batch_sizes: list[int] = []  # of the last 100 batches, for /health

    async def _run(self) -> None:
        assert self.queue is not None
        waiting: list[_Pending] = []
        while True:
            if not waiting:
                waiting.append(await self.queue.get())
            # Gather while requests keep coming (a client opening 64 connections sends them over ~1 s; a batch
            # of the first one alone would make the other 63 wait a whole decode), at most MAX_GATHER_S.
            cap = time.monotonic() + MAX_GATHER_S
            while len(waiting) < self.max_batch * 4:
                timeout = min(self.gather_s, cap - time.monotonic())
                if timeout <= 0:
                    break
                try:
                    waiting.append(await asyncio.wait_for(self.queue.get(), timeout))
                except TimeoutError:
                    break
            group = waiting[0].group
            batch = [p for p in waiting if p.group == group][: self.max_batch]
            waiting = [p for p in waiting if p not in batch]
            seeds = [p.seed for p in batch if p.seed is not None]
            try:
                answers = await asyncio.to_thread(
                    self.generator.generate,
                    [p.messages for p in batch],
                    temperature=group[0],
                    top_p=group[1],
                    max_tokens=group[2],
                    seed=min(seeds) if seeds else None,
                    repetition_penalty=group[3],
                )
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error, the server lives on
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            self.batches += 1
            self.batch_sizes = [*self.batch_sizes[-99:], len(batch)]
            for p, answer in zip(batch, answers):
                if not p.future.done():
                    p.future.set_result(answer)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if self.queue is None:
            self.queue = asyncio.Queue()
            self.worker = asyncio.create_task(self._run())
        method, path = scope["method"], scope["path"].rstrip("/")
        if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
            await self._chat(receive, send)
        elif method == "GET" and path == "/health":
            await _send(send, 200, {"status": "ok", "batches": self.batches, "batch_sizes": self.batch_sizes})
        elif method == "GET" and path in ("/v1/models", "/models"):
            await _send(send, 200, {"object": "list", "data": [{"id": self.model_name, "object": "model"}]})
        else:
            await _send(send, 404, _error(f"no route {method} {path}"))

    async def _chat(self, receive: Any, send: Any) -> None:
        try:
            body = json.loads(await _read_body(receive))
            messages = body["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages must be a non-empty list")
            if int(body.get("n") or 1) != 1:
                raise ValueError("n must be 1: send one request per sample")
            max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 256)
            temperature = float(body.get("temperature", 1.0))
            top_p = float(body.get("top_p", 1.0))
            seed = int(body["seed"]) if body.get("seed") is not None else None
            repetition_penalty = float(body.get("repetition_penalty") or 1.0)
            if repetition_penalty <= 0:
                raise ValueError("repetition_penalty must be > 0")
        except (ValueError, KeyError, TypeError) as exc:
            await _send(send, 400, _error(f"bad request body: {exc}"))
            return
        assert self.queue is not None
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        messages = [{"role": m["role"], "content": m.get("content") or ""} for m in messages]
        await self.queue.put(_Pending(messages, temperature, top_p, max_tokens, seed, repetition_penalty, future))
        try:
            answer = await future
        except Exception as exc:  # noqa: BLE001
            await _send(send, 500, _error(f"generation failed: {type(exc).__name__}: {exc}", "server_error"))
            return
        usage = {"prompt_tokens": answer["prompt_tokens"], "completion_tokens": answer["completion_tokens"]}
        await _send(
            send,
            200,
            {
                "id": f"chatcmpl-{time.time_ns()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model_name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer["text"]},
                        "logprobs": None,
                        "finish_reason": answer["finish_reason"],
                    }
                ],
                "usage": {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]},
            },
        )


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": None}}


async def _send(send: Any, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _serve(app: BatchApp, host: str, port: int) -> None:
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, lifespan="off", access_log=False, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        print(f"ready http://{host}:{server.servers[0].sockets[0].getsockname()[1]}", flush=True)
    await task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a transformers model folder with its tokenizer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH)
    parser.add_argument("--gather-ms", type=int, default=DEFAULT_GATHER_MS)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    generator = BatchGenerator(args.model, args.threads)
    app = BatchApp(generator, str(Path(args.model).resolve()), args.max_batch, args.gather_ms)
    asyncio.run(_serve(app, args.host, args.port))


if __name__ == "__main__":
    main()
