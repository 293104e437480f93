"""The input location users drop prompt files into: a local folder or an S3 prefix."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

DEFAULT_INPUT = "inputs"
INPUT_ENV = "NEXA_INPUT_URI"
# Names that are still being written by convention (editors, rsync, aws s3 cp multipart staging).
TEMP_SUFFIXES: tuple[str, ...] = (".tmp", ".part", ".partial", ".crdownload", "~")


@dataclass(frozen=True)
class InputFile:
    """One file under the input root; `name` is its path relative to the root, with '/' separators."""

    name: str
    size: int
    mtime: float | None = None
    etag: str | None = None


def is_candidate(name: str) -> bool:
    """Hidden and temporary files are never read."""
    base = name.rsplit("/", 1)[-1]
    return bool(base) and not base.startswith(".") and not base.endswith(TEMP_SUFFIXES)


def s3_client() -> Any:
    """A boto3 S3 client configured only from the environment (AWS_ENDPOINT_URL, region, keys)."""
    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None, region_name=region)


def split_s3_uri(uri: str) -> tuple[str, str]:
    rest = uri.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"bad S3 URI {uri!r}: expected s3://bucket/prefix")
    return bucket, prefix.strip("/")


class InputsResource(dg.ConfigurableResource):
    """Where user prompt files (JSONL, CSV, Parquet) arrive: a local folder or s3://bucket/prefix."""

    uri: str = Field(default=DEFAULT_INPUT, description="Local folder or s3://bucket/prefix holding prompt files.")

    @classmethod
    def from_env(cls) -> InputsResource:
        return cls(uri=os.environ.get(INPUT_ENV) or DEFAULT_INPUT)

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def display(self, name: str) -> str:
        return f"{self.uri.rstrip('/')}/{name}" if self.is_s3 else name

    def list_files(self) -> tuple[list[InputFile], list[str]]:
        """Candidate files, sorted by name, and warnings about entries that were skipped."""
        return self._list_s3() if self.is_s3 else self._list_local()

    def read_bytes(self, name: str) -> bytes:
        if self.is_s3:
            bucket, prefix = split_s3_uri(self.uri)
            key = f"{prefix}/{name}" if prefix else name
            return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return self._safe_local_path(name).read_bytes()

    def _root(self) -> Path:
        return Path(self.uri).expanduser().resolve()

    def _safe_local_path(self, name: str) -> Path:
        root = self._root()
        path = (root / name).resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"{name!r} resolves outside the input folder {root}; refusing to read it")
        return path

    def _list_local(self) -> tuple[list[InputFile], list[str]]:
        root = self._root()
        if not root.is_dir():
            return [], []
        files: list[InputFile] = []
        warnings: list[str] = []
        for path in sorted(root.rglob("*")):
            name = path.relative_to(root).as_posix()
            if not is_candidate(name) or any(part.startswith(".") for part in name.split("/")[:-1]):
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                warnings.append(f"skipped {name}: symlink to {path.resolve()} outside the input folder {root}")
                continue
            if not path.is_file():
                continue
            stat = path.stat()
            files.append(InputFile(name=name, size=stat.st_size, mtime=stat.st_mtime))
        return files, warnings

    def _list_s3(self) -> tuple[list[InputFile], list[str]]:
        bucket, prefix = split_s3_uri(self.uri)
        client = s3_client()
        files: list[InputFile] = []
        start = f"{prefix}/" if prefix else ""
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(start):]
                if not name or name.endswith("/") or not is_candidate(name):
                    continue
                files.append(
                    InputFile(
                        name=name,
                        size=int(obj["Size"]),
                        mtime=obj["LastModified"].timestamp(),
                        etag=str(obj.get("ETag", "")).strip('"') or None,
                    )
                )
        return sorted(files, key=lambda f: f.name), []
