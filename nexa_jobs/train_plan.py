"""`nexa train-plan`: the GPU offers SkyPilot's catalog has for the training candidates, cheapest first."""

from __future__ import annotations

import argparse
import json
import sys

from nexa_resources.compute import ComputeError, ComputeResource


def _accelerators(value: str) -> list[str]:
    specs = [v.strip() for v in value.split(",") if v.strip()]
    if not specs:
        raise argparse.ArgumentTypeError("expected a comma-separated list, e.g. A10,A100,H100 or A100:2")
    return [s if ":" in s else f"{s}:1" for s in specs]


def _clouds(value: str) -> list[str]:
    return [v.strip().lower() for v in value.split(",") if v.strip()]


def cmd_train_plan(args: argparse.Namespace) -> int:
    """Print the ranked offers and the one a launch would take; exit 1 when none fits the budget."""
    settings = ComputeResource.from_env().model_dump()
    overrides = {
        "accelerators": args.accelerators,
        "min_gpu_memory_gb": args.min_gpu_memory,
        "estimated_hours": args.hours,
        "use_spot": True if args.spot else None,
        "region": args.region,
        "catalog_dir": args.catalog,
        "max_price_per_hour": args.max_price_per_hour,
        "max_total_usd": args.max_total_usd,
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    resource = ComputeResource(**settings)
    try:
        plan = resource.plan(clouds=args.clouds)
    except ComputeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        chosen = plan.chosen
        print(
            json.dumps(
                {
                    "candidates": plan.candidates,
                    "clouds": plan.clouds,
                    "catalog": plan.catalog,
                    "min_gpu_memory_gb": plan.min_gpu_memory_gb,
                    "use_spot": plan.use_spot,
                    "hours": plan.hours,
                    "max_price_per_hour": plan.max_price_per_hour,
                    "max_total_usd": plan.max_total_usd,
                    "offers": [o.as_row() for o in plan.offers],
                    "chosen": chosen.as_row() if chosen else None,
                    "refused": plan.refusal(),
                },
                indent=1,
            )
        )
    else:
        print(plan.format(limit=args.limit))
    return 0 if plan.chosen is not None else 1


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `train-plan` to the `nexa` command's subparsers."""
    p = subparsers.add_parser(
        "train-plan",
        help="rank the candidate GPUs by price from SkyPilot's catalog and show the one training would use",
        description=(
            "Ranks the candidate accelerators' offers (cloud, region, instance type, GPU memory, $/hour, "
            "estimated total) from SkyPilot's price catalog and marks the one a `skypilot` run would launch. "
            "Offline: it reads only catalogs already in ~/.sky/catalogs (or a snapshot given with --catalog). "
            "Defaults come from NEXA_COMPUTE_* (see docs/configuration.md)."
        ),
    )
    p.add_argument(
        "--accelerators",
        type=_accelerators,
        metavar="A10,A100,H100",
        help="candidate accelerators, NAME or NAME:COUNT (default: A10:1,A100:1,H100:1)",
    )
    p.add_argument("--min-gpu-memory", type=float, metavar="GB", help="leave out GPUs with less memory than this")
    p.add_argument("--hours", type=float, metavar="H", help="estimated training hours, for the total (default 2)")
    p.add_argument("--spot", action="store_true", help="price spot instances (clouds without spot drop out)")
    p.add_argument(
        "--clouds",
        type=_clouds,
        metavar="lambda,aws",
        help="clouds to price (default: those with a catalog on disk; naming others fetches theirs)",
    )
    p.add_argument("--region", help="only this region")
    p.add_argument(
        "--catalog",
        metavar="DIR",
        help="a catalog snapshot folder holding v8/<cloud>/vms.csv (default $NEXA_SKY_CATALOG_DIR)",
    )
    p.add_argument("--max-price-per-hour", type=float, metavar="USD", help="budget cap per hour (default 4)")
    p.add_argument("--max-total-usd", type=float, metavar="USD", help="budget cap for the run (default 20)")
    p.add_argument("--limit", type=int, default=20, help="rows to show (default 20)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_train_plan)
    return p
