"""S3-compatible storage from the environment: delta-rs storage options, the one boto3 client and s3:// URIs.
No Dagster import, so the trainer on a GPU node uses it too.

Settings come from the environment, as everywhere in Nexa: AWS_ENDPOINT_URL (MinIO, moto, R2 …), AWS_REGION /
AWS_DEFAULT_REGION and the usual AWS credential variables (or a profile), which never enter Dagster config.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

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
# The variables a client depends on: a change to any of them gives a new client.
_S3_CLIENT_ENV: tuple[str, ...] = (
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
)
_MAX_ATTEMPTS = 5  # botocore's standard retry mode, as dagster-aws's S3Resource sets it


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


def s3_client() -> Any:
    """A boto3 S3 client configured only from the environment.

    Cached per environment: building one (a boto3 session) costs ~0.4 s on a small machine, which a sensor
    hashing a thousand new files, or an ingest reading them, would otherwise pay per file.
    """
    return _cached_s3_client(tuple(os.environ.get(var) for var in _S3_CLIENT_ENV))


@functools.lru_cache(maxsize=4)
def _cached_s3_client(env: tuple[str | None, ...]) -> Any:
    import boto3
    from botocore.config import Config

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return boto3.session.Session().client(
        "s3",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        region_name=region,
        config=Config(retries={"max_attempts": _MAX_ATTEMPTS, "mode": "standard"}),
    )


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix) of s3://bucket/prefix, the prefix without leading or trailing slashes."""
    rest = uri.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"bad S3 URI {uri!r}: expected s3://bucket/prefix")
    return bucket, prefix.strip("/")


def s3_key(prefix: str, *parts: str) -> str:
    """The object key of `parts` under `prefix` (either may be empty)."""
    return "/".join(filter(None, [prefix, *parts]))


def read_s3_object(uri: str) -> bytes:
    """The bytes of the object at s3://bucket/key."""
    bucket, key = split_s3_uri(uri)
    return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
