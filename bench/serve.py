"""Local serving benchmark: the model served over HTTP (the teacher and eval path) against in-process
batched generation of the same model, prompts and tokens, side by side in one run.

1. Served: `LocalModelServer` (nexa_resources.batch_server in a subprocess on 127.0.0.1), all prompts sent
   at once through the real `openai` client, as distill/completions and eval/predictions send them.
2. In-process: `BatchGenerator.generate` on the same prompts in this process, one call, as a library
   user of transformers would batch them.

Both decode greedily to the same `--max-tokens` (an answer may stop earlier at EOS; greedy answers are the
same on both sides, so both write the same tokens) and use the same torch threads. Each side's wall time
includes its prompt prefill; the served side also its HTTP, JSON and request gathering, not the model
loading (the server is started and warmed first). The two alternate over `--repeat` repetitions and the
median of each is compared. The last line is

    serve: ratio=<served tokens/s ÷ in-process tokens/s> PASS|FAIL

with target ≥ 0.7 (`transformers serve` measured ~0.53 here). Prompts: `--prompts` eval-style requests
(system prompt + task template, no worked example) from the seed pack.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET = 0.7


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    threads = int(os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1)))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import openai
    import torch

    from nexa_assets.distill.task import format_messages, messages
    from nexa_assets.raw.ingest import seed_pack_records
    from nexa_resources.batch_server import BatchGenerator
    from nexa_resources.local_model import LocalModelServer, ensure_local_model

    torch.set_num_threads(threads)
    chats = [messages(*format_messages(r.fields)) for r in seed_pack_records()[: args.prompts]]
    model = ensure_local_model()
    generator = BatchGenerator(model)

    def in_process() -> tuple[float, int, list[str]]:
        started = time.perf_counter()
        answers = generator.generate(chats, temperature=0.0, top_p=1.0, max_tokens=args.max_tokens, seed=None)
        return time.perf_counter() - started, sum(a["completion_tokens"] for a in answers), [a["text"] for a in answers]

    with LocalModelServer(model, max_batch=max(args.prompts, 1)) as server:

        async def ask_all() -> list[tuple[str, int]]:
            client = openai.AsyncOpenAI(base_url=server.base_url, api_key="local", max_retries=0, timeout=3600)
            try:
                replies = await asyncio.gather(*[
                    client.chat.completions.create(
                        model=server.model_name, messages=chat, max_tokens=args.max_tokens, temperature=0.0
                    )
                    for chat in chats
                ])
            finally:
                await client.close()
            return [(r.choices[0].message.content or "", r.usage.completion_tokens) for r in replies]

        def served() -> tuple[float, int, list[str]]:
            started = time.perf_counter()
            replies = asyncio.run(ask_all())
            return time.perf_counter() - started, sum(n for _, n in replies), [text for text, _ in replies]

        print(f"{len(chats)} prompts, up to {args.max_tokens} new tokens, greedy, {threads} threads, "
              f"median of {args.repeat}", flush=True)
        runs: dict[str, list[tuple[float, int]]] = {"served": [], "in-process": []}
        texts: dict[str, list[str]] = {}
        for rep in range(args.repeat):
            order = [("served", served), ("in-process", in_process)]
            for name, run in order if rep % 2 == 0 else order[::-1]:
                seconds, tokens, answers = run()
                runs[name].append((seconds, tokens))
                texts[name] = answers
                print(f"  {name:10s} rep {rep + 1}: {tokens} tokens in {seconds:.1f} s, {tokens / seconds:.1f} tokens/s",
                      flush=True)

    rate = {name: statistics.median(t / s for s, t in values) for name, values in runs.items()}
    same = sum(a == b for a, b in zip(texts["served"], texts["in-process"]))
    print(f"served {rate['served']:.1f} tokens/s, in-process {rate['in-process']:.1f} tokens/s; "
          f"identical answers: {same} of {len(chats)}")
    ratio = rate["served"] / rate["in-process"]
    print(f"serve: ratio={ratio:.2f} {'PASS' if ratio >= TARGET else 'FAIL'}")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
