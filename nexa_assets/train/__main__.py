"""`python -m nexa_assets.train`: train a student on one exact version of an SFT table.

    python -m nexa_assets.train --sft-uri data_lake/sft/examples --sft-version 3 \
        --output data_lake/train/artifacts/run1 --config train.yaml [--set max_steps=20 --set preset=tiny]

Prints progress lines, then one last line `NEXA_METRICS {...}` holding metrics.json. Exit codes: 0 done,
2 bad arguments or config, 1 the run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from nexa_assets.train.config import TrainConfig
from nexa_assets.train.presets import PRESETS


def _value(text: str) -> Any:
    """A --set value: JSON when it parses (numbers, true/false, null), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nexa_assets.train",
        description="Train a student on an SFT Delta table at an exact version.",
        epilog="presets: " + "; ".join(f"{p.name} ({p.device})" for p in PRESETS.values()),
    )
    parser.add_argument("--sft-uri", required=True, help="the sft/examples Delta table: a folder or s3://…")
    parser.add_argument("--sft-version", required=True, type=int, help="the Delta version to train on")
    parser.add_argument("--output", required=True, help="output folder or s3://bucket/prefix (resumes from it)")
    parser.add_argument("--config", help="train config file (.yaml/.yml or .json); defaults when absent")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key")
    parser.add_argument("--stage-dir", help="local folder for the staged snapshot (default $NEXA_STAGE_DIR or tmp)")
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace) -> TrainConfig:
    data: dict[str, Any] = TrainConfig.from_file(args.config).to_dict() if args.config else {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"bad --set {item!r}: expected KEY=VALUE, e.g. max_steps=20")
        data[key.strip()] = _value(value)
    return TrainConfig.from_dict(data)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_UPDATE_CHECK", "1")
    args = parse_args(argv)
    try:
        config = load_config(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from nexa_assets.train.trainer import METRICS_MARKER, train

    def log(line: str) -> None:
        print(line, flush=True)

    metrics = train(
        sft_uri=args.sft_uri,
        sft_version=args.sft_version,
        output=args.output,
        config=config,
        log=log,
        stage_dir=args.stage_dir,
    )
    print(METRICS_MARKER + json.dumps(metrics), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
