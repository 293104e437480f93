"""Where the trainer writes: a local folder, or s3:// (trained in a local folder, then uploaded with the
client of nexa_resources.storage)."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from nexa_resources.storage import s3_client, s3_key, split_s3_uri

WORKDIR_ENV = "NEXA_TRAIN_WORKDIR"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def local_workdir(output: str) -> Path:
    """The local folder a run trains in: the output itself, or a stable temp folder per remote output."""
    if not is_remote(output):
        return Path(output.removeprefix("file://")).expanduser().resolve()
    if not output.startswith("s3://"):
        raise ValueError(f"unsupported output {output!r}: use a local folder or s3://bucket/prefix")
    base = Path(os.environ.get(WORKDIR_ENV) or Path(tempfile.gettempdir()) / "nexa-train")
    return base / hashlib.sha256(output.encode()).hexdigest()[:16]


def upload_dir(local: Path, uri: str, *, client: Any | None = None) -> int:
    """Upload every file under `local` to `uri` (same relative paths). Returns the file count."""
    client = client or s3_client()
    bucket, prefix = split_s3_uri(uri)
    count = 0
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        key = s3_key(prefix, path.relative_to(local).as_posix())
        client.upload_file(str(path), bucket, key)
        count += 1
    return count


def download_latest_checkpoint(uri: str, local: Path, *, client: Any | None = None) -> str | None:
    """Copy the newest complete `checkpoint-N/` under `uri` into `local` (for resuming); its name, or None."""
    client = client or s3_client()
    bucket, prefix = split_s3_uri(uri)
    listing: dict[str, list[str]] = {}
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) + 1 :] if prefix else obj["Key"]
            top, _, rest = rel.partition("/")
            if _CHECKPOINT.match(top) and rest:
                listing.setdefault(top, []).append(rest)
    complete = [name for name, files in listing.items() if "trainer_state.json" in files]
    if not complete:
        return None
    latest = max(complete, key=lambda n: int(_CHECKPOINT.match(n).group(1)))  # type: ignore[union-attr]
    for rest in listing[latest]:
        target = local / latest / rest
        target.parent.mkdir(parents=True, exist_ok=True)
        key = s3_key(prefix, latest, rest)
        client.download_file(bucket, key, str(target))
    return latest


def latest_complete_checkpoint(folder: Path) -> Path | None:
    """The newest `checkpoint-N` that finished saving (trainer_state.json is written last); partial ones
    left by a killed run are removed so they are neither resumed from nor rotated."""
    if not folder.is_dir():
        return None
    found = []
    for child in folder.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and child.is_dir():
            if (child / "trainer_state.json").exists():
                found.append((int(match.group(1)), child))
            else:
                import shutil

                shutil.rmtree(child, ignore_errors=True)
    return max(found)[1] if found else None
