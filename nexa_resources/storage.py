"""delta-rs storage options from the environment (S3-compatible stores); no Dagster import, so the
trainer on a GPU node uses it too."""

from __future__ import annotations

import os
from collections.abc import Mapping

# Environment variable → delta-rs / object_store storage option.
_S3_ENV_OPTIONS: dict[str, str] = {
    "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP": "AWS_ALLOW_HTTP",
    "AWS_REGION": "AWS_REGION",
    "AWS_DEFAULT_REGION": "AWS_REGION",
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN": "AWS_SESSION_TOKEN",
}


def storage_options_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """delta-rs storage options for S3-compatible stores, read from the environment."""
    env = os.environ if env is None else env
    options: dict[str, str] = {}
    for var, option in _S3_ENV_OPTIONS.items():
        if env.get(var) and option not in options:
            options[option] = env[var]
    # S3 conditional writes (If-None-Match) keep concurrent writers safe without a lock service;
    # S3-compatible stores that lack them can set AWS_S3_ALLOW_UNSAFE_RENAME for a single writer.
    if env.get("AWS_S3_ALLOW_UNSAFE_RENAME"):
        options["AWS_S3_ALLOW_UNSAFE_RENAME"] = env["AWS_S3_ALLOW_UNSAFE_RENAME"]
    else:
        options.setdefault("conditional_put", "etag")
    return options
