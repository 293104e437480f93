"""Serve a trained checkpoint over the same OpenAI-compatible local server path as the teacher.

A checkpoint folder (local, or s3:// downloaded once into the cache) holds a full model and its
tokenizer (`nexa_assets.train` merges LoRA adapters before saving), which `transformers serve` loads.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from nexa_resources.local_model import LocalModelServer, cache_dir
from nexa_resources.storage import s3_client, split_s3_uri

# Files a served model needs; training state (checkpoint-N/, optimizer) stays in the bucket.
_MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "chat_template.jinja", "model.safetensors")


def local_checkpoint(uri: str, *, client: object | None = None) -> Path:
    """A local folder holding the checkpoint at `uri` (downloaded from S3 into the cache when remote)."""
    if "://" not in uri or uri.startswith("file://"):
        folder = Path(uri.removeprefix("file://")).expanduser()
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"no model at {folder} (config.json missing): was the checkpoint deleted?")
        return folder
    if not uri.startswith("s3://"):
        raise ValueError(f"unsupported checkpoint uri {uri!r}: use a local folder or s3://bucket/prefix")
    s3 = client or s3_client()
    bucket, prefix = split_s3_uri(uri)
    target = cache_dir() / "checkpoints" / prefix.replace("/", "__")
    if (target / "config.json").exists():
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    found = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):  # type: ignore[attr-defined]
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) + 1 :]
            if "/" in rel or not (rel in _MODEL_FILES or rel.startswith("model-") or rel.endswith(".safetensors")
                                  or rel.endswith(".json")):
                continue
            s3.download_file(bucket, obj["Key"], str(staging / rel))  # type: ignore[attr-defined]
            found += 1
    if not (staging / "config.json").exists():
        shutil.rmtree(staging, ignore_errors=True)
        raise FileNotFoundError(f"no model at {uri} (config.json missing among {found} files)")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


@contextlib.contextmanager
def serve_checkpoint(uri: str, **kwargs: object) -> Iterator[LocalModelServer]:
    """`transformers serve` on 127.0.0.1 for the checkpoint at `uri`, stopped when the block ends."""
    server = LocalModelServer(local_checkpoint(uri), **kwargs)  # type: ignore[arg-type]
    with server:
        yield server
