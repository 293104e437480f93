"""SkyPilot price catalog snapshots: a folder of `<dir>/v8/<cloud>/vms.csv` that the bridge prices from, offline."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nexa_resources.compute.bridge import SkyBridge


def snapshot_clouds(catalog_dir: str | Path) -> tuple[Path, list[str]]:
    """The versioned folder of a catalog snapshot (`<dir>/v8`) and the clouds that have a vms.csv in it."""
    root = Path(catalog_dir).expanduser()
    versions = sorted(p for p in root.glob("v*") if p.is_dir()) if root.is_dir() else []
    if not versions:
        raise ValueError(
            f"catalog_dir {str(root)!r} holds no SkyPilot catalog: expected <dir>/v8/<cloud>/vms.csv, the "
            "layout of ~/.sky/catalogs (e.g. tests/fixtures/skypilot)"
        )
    version = versions[-1]
    clouds = sorted(p.parent.name for p in version.glob("*/vms.csv"))
    return version, clouds


# A snapshot folder does not change while a process runs: its offers are read once per process.
_SNAPSHOT_OFFERS: dict[tuple, dict[str, Any]] = {}


def _snapshot_key(catalog_dir: str, python: Path, names: Sequence[str], clouds: Sequence[str] | None) -> tuple:
    version, _clouds = snapshot_clouds(catalog_dir)
    files = tuple(sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in version.rglob("*.csv")))
    return (str(python), files, tuple(names), tuple(clouds) if clouds is not None else None)


@contextmanager
def catalog_runtime(catalog_dir: str | None) -> Iterator[dict[str, str]]:
    """Environment for the bridge that makes SkyPilot read prices from a snapshot folder, offline.

    SkyPilot 0.14 reads `<SKY_RUNTIME_DIR or ~>/.sky/catalogs/v8/<cloud>/vms.csv` and never re-fetches a
    file that has no `.meta/<cloud>/vms.csv.md5` beside it, so a copy into a temporary runtime dir is
    used as is. Nothing else moves: the API server, credentials and ~/.sky/config.yaml stay where they are."""
    if not catalog_dir:
        yield {}
        return
    version, _clouds = snapshot_clouds(catalog_dir)
    with tempfile.TemporaryDirectory(prefix="nexa-sky-catalog-") as tmp:
        target = Path(tmp) / ".sky" / "catalogs" / version.name
        shutil.copytree(version, target, ignore=shutil.ignore_patterns(".meta"))
        for csv_file in target.rglob("*.csv"):
            csv_file.chmod(0o644)
            csv_file.touch()
        yield {"SKY_RUNTIME_DIR": tmp}


def catalog_offers(
    catalog_dir: str | None, python: Path, names: Sequence[str], clouds: Sequence[str] | None
) -> dict[str, Any]:
    """The bridge's `offers` answer for these accelerator names and clouds: from the snapshot in `catalog_dir`
    (read once per process), else from SkyPilot's cached catalog."""
    memo_key = _snapshot_key(catalog_dir, python, names, clouds) if catalog_dir else None
    answer = _SNAPSHOT_OFFERS.get(memo_key) if memo_key else None
    if answer is None:
        with catalog_runtime(catalog_dir) as extra_env:
            answer = SkyBridge(python).call("offers", {"accelerators": names, "clouds": clouds}, extra_env=extra_env)
        if memo_key:
            _SNAPSHOT_OFFERS[memo_key] = answer
    return answer
