"""Every benchmark script still starts: its imports resolve and `--help` prints (the benchmarks themselves run
by hand, on a quiet machine; bench/README.md)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"nexa_core", "nexa_assets", "nexa_resources", "nexa_jobs", "nexa_ui", "nexa_testing", "bench"}
SCRIPTS = sorted(p for p in (ROOT / "bench").glob("*.py") if p.name != "kd_arm.py")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_starts(script: Path):
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


@pytest.mark.parametrize("script", sorted((ROOT / "bench").glob("*.py")), ids=lambda p: p.name)
def test_every_nexa_name_a_benchmark_imports_exists(script: Path):
    """Imports inside functions too (the efficacy bench imports after setting its environment)."""
    sys.path.insert(0, str(ROOT))
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PACKAGES:
            module = importlib.import_module(node.module)
            missing = [a.name for a in node.names if not hasattr(module, a.name) and not _submodule(node.module, a.name)]
            assert not missing, f"{script.name}:{node.lineno}: {node.module} has no {missing}"


def _submodule(package: str, name: str) -> bool:
    try:
        importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError:
        return False
    return True
