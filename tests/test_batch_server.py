"""Nexa's batching model server: real SmolLM2 weights, the real openai client over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import openai
import pytest

from nexa_resources.batch_server import BatchGenerator
from nexa_resources.local_model import LocalModelServer, ensure_local_model

pytestmark = pytest.mark.slow
CHATS = [
    [{"role": "user", "content": "Name three metals."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}],
    [{"role": "user", "content": "Write one sentence about enzymes and temperature, then stop."}],
]


def _teacher_chats() -> list[list[dict[str, str]]]:
    """Requests as the local teacher sends them: two task types' worked examples, each prompt twice (best of n),
    plus one request that shares no prefix with the others."""
    from nexa_assets.distill.task import format_messages, messages, worked_example
    from nexa_assets.raw.ingest import seed_pack_records

    rows = [r.fields for r in seed_pack_records()]
    rows = [r for r in rows if r["task_type"] == "hypothesis"][:2] + [r for r in rows if r["task_type"] == "methodology"][:2]
    return [messages(*format_messages(r), worked_example(r["task_type"])) for r in rows] * 2 + CHATS[:1]


@pytest.mark.parametrize("chats", [CHATS, _teacher_chats()], ids=["plain", "shared-prefixes"])
def test_batched_greedy_answers_equal_one_at_a_time_generate(chats):
    generator = BatchGenerator(ensure_local_model())
    batched = generator.generate(chats, temperature=0.0, top_p=1.0, max_tokens=24, seed=None)
    tok = generator.tokenizer
    for chat, answer in zip(chats, batched):
        enc = tok(tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True), return_tensors="pt",
                  add_special_tokens=False)
        alone = generator.model.generate(**enc, max_new_tokens=24, do_sample=False)
        new = alone[0, enc["input_ids"].shape[1]:].tolist()
        assert answer["text"] == tok.decode(new, skip_special_tokens=True).strip()
        assert answer["finish_reason"] == ("stop" if tok.eos_token_id in new else "length")
        assert answer["completion_tokens"] == (new.index(tok.eos_token_id) + 1 if tok.eos_token_id in new else 24)
        assert answer["prompt_tokens"] == enc["input_ids"].shape[1]


def test_concurrent_requests_are_answered_in_shared_batches_over_the_openai_api():
    with LocalModelServer(ensure_local_model(), max_batch=8) as server:
        health = f"http://127.0.0.1:{server.port}/health"
        before = json.loads(urllib.request.urlopen(health).read())["batches"]

        async def ask_all() -> list:
            client = openai.AsyncOpenAI(base_url=server.base_url, api_key="local", max_retries=0)
            try:
                return await asyncio.gather(*[
                    client.chat.completions.create(model=server.model_name, messages=chat, max_tokens=8,
                                                   temperature=0.7, top_p=0.95)
                    for chat in CHATS * 2
                ])
            finally:
                await client.close()

        answers = asyncio.run(ask_all())
        after = json.loads(urllib.request.urlopen(health).read())["batches"]
        assert len(answers) == 6
        assert all(a.choices[0].message.content and a.usage.completion_tokens <= 8 for a in answers)
        assert all(a.choices[0].finish_reason in ("stop", "length") for a in answers)
        assert after - before < 6  # shared batches, not one generate call per request
        with pytest.raises(openai.BadRequestError, match="n must be 1"):
            openai.OpenAI(base_url=server.base_url, api_key="local", max_retries=0).chat.completions.create(
                model=server.model_name, messages=CHATS[0], max_tokens=4, n=2
            )
