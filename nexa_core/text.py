"""Text normalization and content hashes shared by every layer (keys are content hashes, DESIGN §3)."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_WHITESPACE = re.compile(r"\s+")
# Hex characters kept from sha256: 96 bits, collision-free at any size this lake will see.
KEY_LENGTH = 24


def normalize(text: str | None) -> str:
    """Unicode-fold, lowercase and collapse whitespace, so trivially different texts compare equal."""
    if not text:
        return ""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def content_hash(*parts: object) -> str:
    """A stable key over the given parts (None and "" hash alike)."""
    joined = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def hash_fraction(key: str, salt: str = "") -> float:
    """A deterministic number in [0, 1) from a key, for stable hash-based splits."""
    digest = hashlib.sha256(f"{salt}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
