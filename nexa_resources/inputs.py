"""The input location users drop prompt files into: a local folder or an S3 prefix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from pydantic import Field

from nexa_resources.profiles import settings_env
from nexa_resources.storage import s3_client, split_s3_uri

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
    """Hidden and temporary files (and anything inside a hidden folder) are never read."""
    parts = name.split("/")
    base = parts[-1]
    hidden_dir = any(part.startswith(".") for part in parts[:-1])
    return bool(base) and not base.startswith(".") and not base.endswith(TEMP_SUFFIXES) and not hidden_dir


def escapes_root(name: str) -> bool:
    """True for a relative name that could point outside the input root: absolute, or with a `..` part."""
    return name.startswith("/") or ".." in name.split("/")


class InputsResource(dg.ConfigurableResource):
    """Where user prompt files (JSONL, CSV, Parquet) arrive: a local folder or s3://bucket/prefix."""

    uri: str = Field(default=DEFAULT_INPUT, description="Local folder or s3://bucket/prefix holding prompt files.")

    @classmethod
    def from_env(cls) -> InputsResource:
        return cls(uri=settings_env().get(INPUT_ENV) or DEFAULT_INPUT)

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def display(self, name: str) -> str:
        return f"{self.uri.rstrip('/')}/{name}" if self.is_s3 else name

    def list_files(self) -> tuple[list[InputFile], list[str]]:
        """Candidate files, sorted by name, and warnings about entries that were skipped."""
        files, skipped = self.list_files_detailed()
        return files, [warning for _, warning in skipped]

    def list_files_detailed(self) -> tuple[list[InputFile], list[tuple[str, str]]]:
        """Candidate files, sorted by name, and (name, warning) for each entry skipped as unsafe."""
        return self._list_s3() if self.is_s3 else self._list_local()

    def read_bytes(self, name: str) -> bytes:
        if self.is_s3:
            if escapes_root(name):
                raise ValueError(f"{name!r} has a '..' or absolute part; refusing to read it")
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

    def _list_local(self) -> tuple[list[InputFile], list[tuple[str, str]]]:
        root = self._root()
        if not root.is_dir():
            return [], []
        files: list[InputFile] = []
        warnings: list[tuple[str, str]] = []
        for path in sorted(root.rglob("*")):
            name = path.relative_to(root).as_posix()
            if not is_candidate(name):
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                warnings.append((name, f"skipped {name}: symlink to {path.resolve()} outside the input folder {root}"))
                continue
            if not path.is_file():
                continue
            stat = path.stat()
            files.append(InputFile(name=name, size=stat.st_size, mtime=stat.st_mtime))
        return files, warnings

    def _list_s3(self) -> tuple[list[InputFile], list[tuple[str, str]]]:
        from dagster_aws.s3.sensor import get_objects

        bucket, prefix = split_s3_uri(self.uri)
        files: list[InputFile] = []
        warnings: list[tuple[str, str]] = []
        start = f"{prefix}/" if prefix else ""
        for obj in get_objects(bucket=bucket, prefix=start, client=s3_client()):
            name = obj["Key"][len(start):]
            if not name or name.endswith("/"):
                continue
            if escapes_root(name):
                # A key like `incoming/../x.jsonl` is a plain key to S3, but the same name would walk out of
                # a folder if it were ever mirrored locally; it is never read.
                warnings.append((name, f"skipped {self.display(name)}: name has a '..' or absolute part"))
                continue
            if not is_candidate(name):
                continue
            files.append(
                InputFile(
                    name=name,
                    size=int(obj["Size"]),
                    mtime=obj["LastModified"].timestamp(),
                    etag=str(obj.get("ETag", "")).strip('"') or None,
                )
            )
        return sorted(files, key=lambda f: f.name), warnings
