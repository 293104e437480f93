"""Training data from the lake: a torch DataLoader over a table at a Delta version and split, and staging
that snapshot to local disk before training (the origin's build_loader / build_dataloaders /
stage_catalog_to_nvme).

Reads Delta directly with deltalake so the trainer runs on a GPU node without Dagster installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import polars as pl
import pyarrow.parquet as pq
from deltalake import DeltaTable

from nexa_resources.storage import storage_options_from_env

IGNORE_INDEX = -100  # label of tokens that carry no loss (prompt and padding), as in transformers


class LakeLike(Protocol):
    """What build_loader needs of a lake: nexa_resources.lake.LakeResource fits."""

    def uri(self, table: str) -> str: ...

    def storage_options(self) -> dict[str, str] | None: ...


def storage_options_for(uri: str) -> dict[str, str] | None:
    """delta-rs storage options from the environment for a remote URI; None for local paths."""
    if "://" not in uri or uri.startswith("file://"):
        return None
    return storage_options_from_env()


def table_location(lake_or_uri: LakeLike | str, table: str) -> tuple[str, dict[str, str] | None]:
    """(table URI, storage options) for `table` (`layer/name`) in a lake resource or under a lake root URI."""
    if isinstance(lake_or_uri, str):
        uri = f"{lake_or_uri.rstrip('/')}/{table.replace('.', '/', 1)}"
        return uri, storage_options_for(uri)
    return lake_or_uri.uri(table), lake_or_uri.storage_options()


def read_rows(
    table_uri: str,
    version: int,
    *,
    split: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """The rows of a Delta table at exactly `version`, optionally only one `split`."""
    options = dict(storage_options) if storage_options is not None else storage_options_for(table_uri)
    dt = DeltaTable(table_uri, version=int(version), storage_options=options)
    rows = pl.from_arrow(dt.to_pyarrow_table())
    return _only_split(rows, split, f"{table_uri}@v{version}")


def _only_split(rows: pl.DataFrame, split: str | None, where: str) -> pl.DataFrame:
    if split is None:
        return rows
    if "split" not in rows.columns:
        raise ValueError(f"{where} has no `split` column; pass split=None to read every row")
    return rows.filter(pl.col("split") == split)


# ------------------------------------------------------------------------------------------ staging


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def stage_snapshot(
    table_uri: str,
    version: int,
    dest_dir: str | Path,
    storage_options: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Copy a table's rows at `version` to one local Parquet file; returns (and writes) its manifest.

    Training then reads fast local disk, never the remote table. A snapshot already staged with a matching
    checksum is reused, so a resumed run does not copy it again.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    name = table_uri.rstrip("/").rsplit("/", 2)
    # Two lakes hold tables of the same name: the table's full URI keeps their snapshots apart.
    lake = hashlib.sha256(table_uri.rstrip("/").encode()).hexdigest()[:10]
    stem = f"{'-'.join(name[-2:])}-{lake}-v{int(version)}"
    path, manifest_path = dest / f"{stem}.parquet", dest / f"{stem}.manifest.json"
    if manifest_path.exists() and path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("sha256") == sha256_file(path) and manifest.get("table_uri") == table_uri:
            return {**manifest, "reused": True}
    started = time.perf_counter()
    options = dict(storage_options) if storage_options is not None else storage_options_for(table_uri)
    dt = DeltaTable(table_uri, version=int(version), storage_options=options)
    arrow = dt.to_pyarrow_table()
    partial = path.with_suffix(f".parquet.{os.getpid()}.partial")
    pq.write_table(arrow, partial)
    os.replace(partial, path)
    manifest = {
        "table_uri": table_uri,
        "version": int(version),
        "rows": arrow.num_rows,
        "columns": arrow.schema.names,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "path": str(path.resolve()),
        "seconds": round(time.perf_counter() - started, 3),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return {**manifest, "reused": False}


def load_staged(manifest: Mapping[str, Any], split: str | None = None) -> pl.DataFrame:
    """The staged rows (optionally one split), after checking the file still matches its checksum."""
    path = Path(manifest["path"])
    if sha256_file(path) != manifest["sha256"]:
        raise ValueError(f"staged snapshot {path} does not match its manifest checksum; stage it again")
    return _only_split(pl.read_parquet(path), split, str(path))


def ids_digest(ids: Sequence[str]) -> str:
    """sha256 of the sorted ids: names a set of rows in metrics without listing them."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


# ------------------------------------------------------------------------------------ tokenization


def split_messages(messages: Sequence[Mapping[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(prompt, completion) of a chat row: every message before the last assistant turn, and that turn."""
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    if not plain or plain[-1]["role"] != "assistant":
        roles = [m["role"] for m in plain]
        raise ValueError(f"a training row must end with an assistant message, got roles {roles}")
    return plain[:-1], plain[-1:]


def encode_chat(tokenizer: Any, messages: Sequence[Mapping[str, str]], max_len: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one chat row, as TRL's SFTTrainer builds them for conversational prompt-completion
    rows: the chat template applied, loss only on the completion (which ends with the template's end-of-turn
    token, so EOS is learned), truncated from the end to `max_len`."""
    prompt, completion = split_messages(messages)
    prompt_ids = _ids(tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True))
    full_ids = _ids(tokenizer.apply_chat_template(prompt + completion, tokenize=True))
    start = 0
    while start < min(len(prompt_ids), len(full_ids)) and prompt_ids[start] == full_ids[start]:
        start += 1
    labels = [IGNORE_INDEX] * start + full_ids[start:]
    return full_ids[:max_len], labels[:max_len]


def _ids(encoded: Any) -> list[int]:
    if isinstance(encoded, Mapping) or hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    return list(encoded)


class ChatRows:
    """A map-style torch dataset of chat rows (dicts with `messages`, and the table's other columns)."""

    def __init__(self, rows: pl.DataFrame) -> None:
        if "messages" not in rows.columns:
            raise ValueError(f"chat rows need a `messages` column; got {rows.columns}")
        self.rows = rows.to_dicts()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


class ChatCollator:
    """Tokenize a batch of chat rows and pad to the batch's longest row (never to max length)."""

    def __init__(self, tokenizer: Any, max_len: int = 512, key: str = "example_id") -> None:
        self.tokenizer, self.max_len, self.key = tokenizer, max_len, key
        pad = tokenizer.pad_token_id
        self.pad_id = tokenizer.eos_token_id if pad is None else pad

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        encoded = [encode_chat(self.tokenizer, row["messages"], self.max_len) for row in batch]
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (ids, labs) in enumerate(encoded):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(labs)] = torch.tensor(labs)
            attention[i, : len(ids)] = 1
        out: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
        if all(self.key in row for row in batch):
            out[self.key] = [row[self.key] for row in batch]
        return out


def loader_from_rows(
    rows: pl.DataFrame,
    tokenizer: Any | None,
    batch_size: int,
    *,
    shuffle: bool = False,
    max_seq_len: int = 512,
    seed: int = 0,
) -> Any:
    """A DataLoader over chat rows: tokenized batches with a tokenizer, else lists of row dicts."""
    import torch
    from torch.utils.data import DataLoader

    generator = torch.Generator().manual_seed(seed) if shuffle else None
    collate = ChatCollator(tokenizer, max_seq_len) if tokenizer is not None else (lambda batch: batch)
    return DataLoader(ChatRows(rows), batch_size=batch_size, shuffle=shuffle, collate_fn=collate, generator=generator)


def build_loader(
    lake_or_uri: LakeLike | str,
    table: str,
    version: int,
    split: str | None,
    batch_size: int,
    tokenizer: Any | None = None,
    *,
    shuffle: bool = False,
    max_seq_len: int = 512,
    seed: int = 0,
) -> Any:
    """A torch DataLoader over `table` (e.g. "sft/examples") at Delta `version`, one `split` (None: all rows)."""
    uri, options = table_location(lake_or_uri, table)
    rows = read_rows(uri, version, split=split, storage_options=options)
    return loader_from_rows(rows, tokenizer, batch_size, shuffle=shuffle, max_seq_len=max_seq_len, seed=seed)


def build_dataloaders(
    lake_or_uri: LakeLike | str,
    table: str,
    version: int,
    batch_size: int,
    tokenizer: Any | None = None,
    splits: Sequence[str] = ("train", "val"),
    *,
    max_seq_len: int = 512,
    seed: int = 0,
) -> dict[str, Any]:
    """One DataLoader per split over one read of the table at `version`; only `train` is shuffled."""
    uri, options = table_location(lake_or_uri, table)
    rows = read_rows(uri, version, storage_options=options)
    return {
        split: loader_from_rows(
            _only_split(rows, split, f"{uri}@v{version}"),
            tokenizer,
            batch_size,
            shuffle=split == "train",
            max_seq_len=max_seq_len,
            seed=seed,
        )
        for split in splits
    }
