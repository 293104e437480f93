"""Teacher collection benchmark: Nexa's bulk collection against the scripted server, side by side.

Against `ScriptedServer(latency_ms=--latency-ms)` (an OpenAI-compatible server in a subprocess that
answers every chat completion after a fixed latency), with `--requests` distinct teacher requests:

1. Nexa: the real path, `collect()` from nexa_assets/distill/collect.py with a
   `ChatClient(max_concurrency=--concurrency)`, merging every batch of finished rows into a real local
   Delta lake (`LakeResource.write(..., mode="merge")`, a fresh lake in a temp dir per repetition),
   progress bar off. Its wall time is compared with the ideal `requests x latency / concurrency`:
   ideal / actual, target >= 0.9.
2. Baseline, origin style: a `ThreadPoolExecutor(8)` over sequential batches of 8 with the synchronous
   `openai.OpenAI` client (submit 8, wait for all 8, next 8), the rows merged into its own lake once at
   the end. Ratio baseline / Nexa (how many times faster Nexa is).
3. Nexa again on the lake of run 1: the answered request_ids are read from the lake exactly as
   `collect_into_lake` does (rows without an error count as answered) and only the others are sent.
   Target: 0 requests reach the server (its /stats), and the wall time of the whole cached run.

Nexa and the baseline are interleaved in every repetition (their order alternating); each timing is
the median over `--repeat` repetitions. CPU time is printed too, as a steadier second opinion when
other processes share the CPUs: this process's (all threads), split into the event-loop thread (the
HTTP client and collect()) and the rest (the lake merges, which collect() runs in worker threads),
and the server process's. `--batch-size` is collect()'s rows per merge (default 32, the
distill/completions default). `--profile` runs one more Nexa collection under cProfile, timed by the
event-loop thread's CPU clock, and prints its CPU by package and its top functions. `--loop uvloop`
runs the Nexa collections on uvloop instead of asyncio's default loop.
4. Nexa with teacher probabilities (`--top-logprobs K`, default 20; 0 skips it): the same collection asking
   for `logprobs`/`top_logprobs=K` and merging each batch's token rows into distill/logprobs as well, as the
   distill/completions asset does for a remote teacher (`endpoint_logprobs_writer`). Interleaved with run 1;
   target: at most 10% slower (median wall ratio <= 1.10). The distill/logprobs table's size on disk is printed
   per 1,000 answers, at the scripted answers' length and scaled to 256-token answers.
Everything lives in a temporary directory (under $TMPDIR) that is removed at the end.
Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import cProfile
import gc
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import openai
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nexa_assets.distill.completions import endpoint_logprobs_writer
from nexa_resources.tables.distill import COMPLETION_SCHEMA
from nexa_assets.distill.collect import CollectStats, collect
from nexa_assets.distill.task import format_messages, messages, request_id
from nexa_core.pricing import FREE
from nexa_core.templates import templates
from nexa_core.taxonomy import DOMAINS, TASK_TYPES
from nexa_resources.lake import LakeResource, Lineage
from nexa_resources.llm_client import (
    ChatClient,
    SamplingParams,
    run_sync,
)
from nexa_testing.scripted_server import ScriptedServer

RATIO_TARGET = 0.9
LOGPROBS_SLOWDOWN_TARGET = 1.10
COMPLETIONS = "distill/completions"
MODEL = "scripted-teacher"
BATCH = 8  # the baseline's batch and thread count
PARAMS = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=384)
LINEAGE = Lineage(run_id="bench-teacher", round=0)


# ---------------------------------------------------------------------------- data


def teacher_requests(n: int) -> list[dict[str, Any]]:
    """n distinct requests shaped like `teacher_requests()` builds them from raw/prompts."""
    version = templates().version
    out = []
    for i in range(n):
        row = {
            "prompt_id": f"bench-{i:06d}",
            "domain": DOMAINS[i % len(DOMAINS)],
            "task_type": TASK_TYPES[i % len(TASK_TYPES)],
            "instruction": f"Question {i}: how does factor {i % 97} change the outcome of experiment {i // 97}?",
            "context": "A short context paragraph about the setting of the experiment." if i % 3 else "",
        }
        system_prompt, user_prompt = format_messages(row)
        out.append(
            {
                "request_id": request_id(row["prompt_id"], MODEL, version, PARAMS),
                "prompt_id": row["prompt_id"],
                "template_version": version,
                "system_prompt": system_prompt,
                "user_prompt": user_prompt,
                "regenerated_from": None,
            }
        )
    return out


def merger(lake: LakeResource) -> Callable[[list[dict[str, Any]]], None]:
    """The on_batch of `collect_into_lake`: merge finished rows into distill/completions."""

    def merge(rows: list[dict[str, Any]]) -> None:
        lake.write(COMPLETIONS, pl.DataFrame(rows, schema=COMPLETION_SCHEMA), mode="merge", lineage=LINEAGE)

    return merge


def answered_ids(lake: LakeResource) -> set[str]:
    """The request_ids `collect_into_lake` counts as answered: rows in the lake without an error."""
    answered = lake.read(COMPLETIONS, columns=["request_id", "error"], missing_ok=True)
    return set(answered.filter(pl.col("error").is_null())["request_id"]) if not answered.is_empty() else set()


# ------------------------------------------------------------------------ contenders


def run_loop(factory: Callable[[], Any], loop: str) -> Any:
    if loop == "nexa":  # what Nexa itself runs on (run_sync): uvloop when installed
        return run_sync(factory)
    if loop == "uvloop":
        import uvloop

        return uvloop.run(factory())
    return asyncio.run(factory())


def with_logprobs(lake: LakeResource, top_k: int) -> Callable[[list[dict[str, Any]]], None]:
    """The asset's merge for a teacher asked for probabilities: distill/logprobs rows, then the completions."""
    teacher = SimpleNamespace(model_id=MODEL, top_logprobs=top_k, logprobs_tokenizer="")
    store = endpoint_logprobs_writer(lake, teacher, LINEAGE)  # type: ignore[arg-type]
    merge_completions = merger(lake)

    def merge(rows: list[dict[str, Any]]) -> None:
        store(rows)
        merge_completions([{k: v for k, v in r.items() if k != "logprobs"} for r in rows])

    return merge


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def nexa(
    server: ScriptedServer, lake: LakeResource, requests: list[dict[str, Any]], args: argparse.Namespace,
    top_logprobs: int = 0,
) -> tuple[CollectStats | None, int, float]:
    """Skip what the lake has answered, collect the rest with the real collect().

    Returns (stats or None when nothing was sent, requests skipped, CPU seconds of the event-loop thread:
    the HTTP client and collect() itself; the merges run in worker threads).
    """
    done = answered_ids(lake)
    pending = [r for r in requests if r["request_id"] not in done]
    if not pending:
        return None, len(requests), 0.0
    client = ChatClient(base_url=server.base_url, model=MODEL, max_concurrency=args.concurrency)
    loop_cpu = time.thread_time()
    params = replace(PARAMS, top_logprobs=top_logprobs)
    stats = run_loop(
        lambda: collect(
            pending,
            client,
            params,
            model_id=MODEL,
            price=FREE,
            on_batch=with_logprobs(lake, top_logprobs) if top_logprobs else merger(lake),
            batch_size=args.batch_size,
            progress=False,
        ),
        args.loop,
    )
    return stats, len(requests) - len(pending), time.thread_time() - loop_cpu


def baseline(server: ScriptedServer, lake: LakeResource, requests: list[dict[str, Any]]) -> int:
    """Origin style: 8 threads, sequential batches of 8 with the sync client; one merge at the end."""
    client = openai.OpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0, timeout=120)

    def one(request: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        response = client.chat.completions.create(
            model=MODEL, messages=messages(request["system_prompt"], request["user_prompt"]), **PARAMS.as_request()
        )
        choice, usage = response.choices[0], response.usage
        return {
            **request,
            "teacher_model": MODEL,
            "completion": (choice.message.content or "").strip() or None,
            "finish_reason": choice.finish_reason,
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
            "latency_ms": round((time.monotonic() - started) * 1000, 1),
            "cost_usd": 0.0,
            "attempts": 1,
            "error": None,
        }

    rows: list[dict[str, Any]] = []
    with concurrent.futures.ThreadPoolExecutor(BATCH) as pool:
        for start in range(0, len(requests), BATCH):
            rows.extend(pool.map(one, requests[start : start + BATCH]))
    client.close()
    merger(lake)(rows)
    return len(rows)


# ------------------------------------------------------------------ teacher probabilities


@dataclass
class LogprobsResult:
    summary: str
    last_line: str
    ok: bool


def logprobs_phase(tmp: Path, args: argparse.Namespace) -> LogprobsResult:
    """Collection with and without top-k probabilities stored, interleaved, at a latency fit for the answers'
    length: the added work is CPU per answer token (JSON of k alternatives per token, their rows), so what it
    costs in wall time depends on how fast the teacher produces tokens; the CPU per answer is printed as well."""
    n, k = args.lp_requests, args.top_logprobs
    requests = teacher_requests(n)
    wall: dict[int, list[float]] = {0: [], k: []}
    cpu: dict[int, list[float]] = {0: [], k: []}
    srv: dict[int, list[float]] = {0: [], k: []}
    rows, size = [], []
    with ScriptedServer(latency_ms=args.lp_latency_ms) as server:
        for rep in range(args.repeat):
            for top in (0, k) if rep % 2 == 0 else (k, 0):
                root = tmp / f"lake-lp{top}-{rep}"
                lake = LakeResource(root=str(root))
                before = server_cpu(server)
                seconds, used, _ = timed(lambda lake=lake, top=top: nexa(server, lake, requests, args, top))
                wall[top].append(seconds)
                cpu[top].append(used)
                srv[top].append(server_cpu(server) - before)
                if top:
                    rows.append(lake.read("distill/logprobs", columns=["request_id"]).height)
                    size.append(dir_bytes(root / "distill" / "logprobs"))
                shutil.rmtree(root, ignore_errors=True)
            print(f"  probabilities rep {rep + 1}: without {wall[0][-1]:.2f} s, with top-{k} {wall[k][-1]:.2f} s")
    slowdown = med(wall[k]) / med(wall[0])
    tokens = med([float(r) for r in rows]) / n
    per_1000 = med([float(b) for b in size]) / n * 1000 / 1e6
    per_1000_256 = per_1000 * 256 / max(tokens, 1)
    extra_ms = (med(cpu[k]) - med(cpu[0])) / n * 1000
    server_ms = (med(srv[k]) - med(srv[0])) / n * 1000
    ok = slowdown <= LOGPROBS_SLOWDOWN_TARGET
    summary = "\n".join([
        f"  {f'Nexa + top-{k} probabilities':<36} {fmt_s(med(wall[k]))}   without {fmt_s(med(wall[0])).strip()}   "
        f"{slowdown:4.2f}x  (target <= {LOGPROBS_SLOWDOWN_TARGET:.2f}; {n} requests at {args.lp_latency_ms} ms)  "
        f"{'PASS' if ok else 'MISS'}",
        f"  {'':<36} + {extra_ms:.1f} ms CPU per answer ({tokens:.0f} tokens): one core keeps up with "
        f"{1000 / max(extra_ms, 1e-6):,.0f} answers/s with probabilities; the scripted server + {server_ms:.1f} ms "
        "(a real endpoint spends that on its own machine, here it shares the CPUs)",
        f"  {'':<36} distill/logprobs {per_1000:.2f} MB per 1,000 answers ({per_1000_256:.1f} MB per 1,000 answers of "
        f"256 tokens)",
    ])
    last = (f"teacher logprobs: slowdown={slowdown:.2f} cpu_ms_per_answer=+{extra_ms:.1f} "
            f"mb_per_1000_answers={per_1000:.2f} mb_per_1000_answers_256_tokens={per_1000_256:.1f} "
            f"{'PASS' if ok else 'FAIL'}")
    return LogprobsResult(summary, last, ok)


# -------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, all threads, result)."""
    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, time.process_time() - cpu, out


def server_cpu(server: ScriptedServer) -> float:
    """CPU seconds the server process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()  # type: ignore[union-attr]
    except (OSError, AttributeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def med(values: list[float]) -> float:
    return statistics.median(values)


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms" if seconds < 1 else f"{seconds:7.2f} s "


def load() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average n/a"


def profile_nexa(server: ScriptedServer, tmp: Path, requests: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """One more Nexa collection under cProfile, timed by the event-loop thread's CPU clock.

    A wall-clock profile on a busy machine mostly shows waiting (epoll) and preempted syscalls; the
    thread's CPU clock shows where the client's own CPU goes. Merges in worker threads are not seen.
    """
    lake = LakeResource(root=str(tmp / "lake-profile"))
    server.reset()
    profiler = cProfile.Profile(time.thread_time)
    start = time.perf_counter()
    profiler.enable()
    nexa(server, lake, requests, args)
    profiler.disable()
    wall = time.perf_counter() - start
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    by_package: Counter[str] = Counter()
    for (file, _, name), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "site-packages/" in file:
            key = file.split("site-packages/", 1)[1].split("/", 1)[0]
        elif file.startswith(str(ROOT)):
            key = os.path.relpath(file, ROOT)
        elif file == "~":
            key = f"builtin {name}"
        else:
            key = "stdlib " + Path(file).name
        by_package[key] += own
    total = sum(by_package.values())
    print(
        f"profile: one Nexa collection under cProfile, event-loop thread CPU clock "
        f"({total:.2f} s CPU profiled, {wall:.2f} s wall with the profiler on)"
    )
    print("  own CPU by package:")
    for key, own in by_package.most_common(12):
        print(f"    {own:6.2f} s  {100 * own / total:4.1f}%  {key}")
    for key in ("tottime", "cumulative"):
        out.seek(0)
        out.truncate()
        stats.sort_stats(key).print_stats(args.profile_top)
        lines = out.getvalue().splitlines()
        head = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
        print(f"  top {args.profile_top} by {key}:")
        for line in lines[head : head + args.profile_top + 1]:
            print("   ", line.replace(str(ROOT) + "/", "").replace(".venv/lib/python3.11/site-packages/", "")[:170])


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="teacher requests per run (default 2000)")
    parser.add_argument("--latency-ms", type=int, default=100, help="scripted server latency (default 100)")
    parser.add_argument("--concurrency", type=int, default=64, help="Nexa's max_concurrency (default 64)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; timings are medians (default 3)")
    parser.add_argument(
        "--batch-size", type=int, default=32, help="rows per lake merge in collect() (default 32, as in the asset)"
    )
    parser.add_argument(
        "--loop", choices=("nexa", "asyncio", "uvloop"), default="nexa",
        help="Nexa's event loop: nexa = what run_sync uses (uvloop when installed)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the (slow) baseline")
    parser.add_argument("--top-logprobs", type=int, default=20,
                        help="also collect with top-K teacher probabilities stored (default 20; 0 skips)")
    parser.add_argument("--lp-latency-ms", type=int, default=1000,
                        help="server latency of the probabilities comparison (default 1000: an ~90-token answer)")
    parser.add_argument("--lp-requests", type=int, default=640, help="requests per probabilities run (default 640)")
    parser.add_argument("--profile", action="store_true", help="also profile one Nexa collection with cProfile")
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args(argv)
    if min(args.requests, args.latency_ms, args.concurrency, args.repeat, args.batch_size) < 1:
        parser.error("--requests, --latency-ms, --concurrency, --repeat and --batch-size must be >= 1")

    n, latency_s, conc = args.requests, args.latency_ms / 1000, args.concurrency
    ideal = n * latency_s / conc
    ideal_base = -(-n // BATCH) * latency_s
    print(
        f"nexa teacher benchmark: requests={n:,} latency={args.latency_ms} ms concurrency={conc} "
        f"batch-size={args.batch_size} loop={args.loop} repeat={args.repeat} (medians; contenders interleaved) "
        f"on {os.cpu_count()} CPUs, {load()}"
    )
    import deltalake

    print(
        f"  openai {openai.__version__}, deltalake {deltalake.__version__}, polars {pl.__version__}, "
        f"python {sys.version.split()[0]}"
    )
    requests = teacher_requests(n)
    assert len({r["request_id"] for r in requests}) == n

    names = ("nexa", "base", "cached")
    t: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    srv_cpu: dict[str, list[float]] = {k: [] for k in names}
    sent: dict[str, list[int]] = {k: [] for k in names}
    in_flight: dict[str, list[int]] = {k: [] for k in names}
    loop_cpu: list[float] = []
    tmp = Path(tempfile.mkdtemp(prefix="nexa-bench-teacher-"))

    def measure(name: str, server: ScriptedServer, fn: Callable[[], Any]) -> Any:
        server.reset()
        before = server_cpu(server)
        wall, used, out = timed(fn)
        stats = server.stats()
        t[name].append(wall)
        cpu[name].append(used)
        srv_cpu[name].append(server_cpu(server) - before)
        sent[name].append(stats["requests"])
        in_flight[name].append(stats["max_in_flight"])
        return out

    try:
        with ScriptedServer(latency_ms=args.latency_ms) as server:
            print(f"  scripted server {server.base_url}")
            # Warm-up (imports, first connections, server code paths), not timed.
            nexa(server, LakeResource(root=str(tmp / "lake-warmup")), requests[: min(n, 2 * conc)], args)
            for rep in range(args.repeat):
                lake = LakeResource(root=str(tmp / f"lake-nexa-{rep}"))
                base_lake = LakeResource(root=str(tmp / f"lake-base-{rep}"))
                contenders: list[tuple[str, Callable[[], Any]]] = [
                    ("nexa", lambda lake=lake: nexa(server, lake, requests, args)),
                ]
                if not args.no_baseline:
                    contenders.append(("base", lambda lake=base_lake: baseline(server, lake, requests)))
                for name, fn in contenders if rep % 2 == 0 else contenders[::-1]:
                    out = measure(name, server, fn)
                    if name == "nexa":
                        collected, skipped, used = out
                        assert skipped == 0 and collected is not None and collected.done == n, (skipped, collected)
                        assert collected.errors == 0, collected.error_kinds
                        loop_cpu.append(used)
                    table = (lake if name == "nexa" else base_lake).read(COMPLETIONS, columns=["request_id", "error"])
                    assert table.height == n and table["error"].null_count() == n, (name, table.height)
                # 3. The same Nexa run on the same lake: everything is answered, nothing may be sent.
                collected, skipped, _ = measure("cached", server, lambda lake=lake: nexa(server, lake, requests, args))
                assert collected is None and skipped == n, (collected, skipped)
                line = f"  rep {rep + 1}: nexa {fmt_s(t['nexa'][-1]).strip()}"
                if not args.no_baseline:
                    line += f", baseline {fmt_s(t['base'][-1]).strip()}"
                print(line + f", cached re-run {fmt_s(t['cached'][-1]).strip()} ({sent['cached'][-1]} sent)")
                shutil.rmtree(tmp / f"lake-nexa-{rep}", ignore_errors=True)
                shutil.rmtree(tmp / f"lake-base-{rep}", ignore_errors=True)
            if args.profile:
                print()
                profile_nexa(server, tmp, requests, args)
        lp = logprobs_phase(tmp, args) if args.top_logprobs else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    nx, cached = med(t["nexa"]), med(t["cached"])
    ratio = ideal / nx
    cached_sent = max(sent["cached"])
    print()
    print(f"results (median of {args.repeat} interleaved runs):")
    print(
        f"  {'Nexa collect() + Delta merges':<36} {fmt_s(nx)}   ideal {fmt_s(ideal)}   ideal/actual {ratio:4.2f}  "
        f"(target >= {RATIO_TARGET:g})  {'PASS' if ratio >= RATIO_TARGET else 'MISS'}"
    )
    print(
        f"  {'':<36} {n / nx:5.0f} req/s; server saw {max(sent['nexa']):,} requests, "
        f"at most {max(in_flight['nexa'])} in flight"
    )
    if not args.no_baseline:
        base = med(t["base"])
        print(
            f"  {'baseline: 8 threads, batches of 8':<36} {fmt_s(base)}   ideal {fmt_s(ideal_base)}   "
            f"ideal/actual {ideal_base / base:4.2f}"
        )
        print(
            f"  {'':<36} {n / base:5.0f} req/s; server saw {max(sent['base']):,} requests, "
            f"at most {max(in_flight['base'])} in flight"
        )
        print(f"  {'Nexa vs baseline':<36} {base / nx:5.1f}x faster (baseline / Nexa wall time)")
    print(
        f"  {'Nexa again on the same lake':<36} {fmt_s(cached)}   requests sent {cached_sent}  (target 0)  "
        f"{'PASS' if cached_sent == 0 else 'MISS'}"
    )
    if lp is not None:
        print(lp.summary)
    print()
    print("CPU (medians; the machine's other load stretches wall time, CPU time much less):")
    loop_s, proc_s = med(loop_cpu), med(cpu["nexa"])
    print(
        f"  {'Nexa, this process':<36} {fmt_s(proc_s)}   event loop (HTTP client + collect) {fmt_s(loop_s).strip()} "
        f"= {loop_s / n * 1000:.2f} ms/request; other threads (lake merges) {fmt_s(max(proc_s - loop_s, 0)).strip()}"
    )
    need = conc / latency_s
    print(
        f"  {'':<36} the event loop alone could sustain {n / loop_s:,.0f} req/s on a free core; "
        f"the ideal needs {need:,.0f} req/s"
    )
    print(f"  {'scripted server (Nexa run)':<36} {fmt_s(med(srv_cpu['nexa']))}")
    if not args.no_baseline:
        base_cpu, base_srv = fmt_s(med(cpu["base"])), fmt_s(med(srv_cpu["base"])).strip()
        print(f"  {'baseline, this process':<36} {base_cpu}   server {base_srv}")
    print(f"  {'Nexa again (cached), this process':<36} {fmt_s(med(cpu['cached']))}")
    print(f"  after the runs: {load()}")
    print()
    print("raw timings (s):")
    for name, values in t.items():
        if values:
            print(f"  {name:<7} " + "  ".join(f"{v:.3f}" for v in values))
    if lp is not None:
        print(lp.last_line)
    return 0 if ratio >= RATIO_TARGET and cached_sent == 0 and (lp is None or lp.ok) else 1


if __name__ == "__main__":
    sys.exit(main())
