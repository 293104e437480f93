"""The cells Nexa distills for: scientific domains × task types (a cell adds a rubric metric)."""

from __future__ import annotations

DOMAINS: tuple[str, ...] = ("biology", "chemistry", "materials", "physics")
TASK_TYPES: tuple[str, ...] = ("hypothesis", "methodology")
