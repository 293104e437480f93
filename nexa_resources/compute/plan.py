"""The price plan: candidate accelerators ranked by $/hour from SkyPilot's catalog rows, and the budget verdict."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nexa_resources.compute.errors import BudgetExceeded, NoOffers


def parse_accelerator(spec: str) -> tuple[str, float]:
    """'A100:2' -> ('A100', 2.0); 'A10' -> ('A10', 1.0)."""
    name, _, count = spec.strip().partition(":")
    if not name:
        raise ValueError(f"accelerator {spec!r}: expected NAME or NAME:COUNT, e.g. 'A100:1'")
    try:
        value = float(count) if count else 1.0
    except ValueError:
        raise ValueError(f"accelerator {spec!r}: the count after ':' must be a number, e.g. 'A100:1'") from None
    if value <= 0:
        raise ValueError(f"accelerator {spec!r}: the count must be positive")
    return name, value


def accelerator_label(name: str, count: float) -> str:
    return f"{name}:{int(count) if float(count).is_integer() else count}"


@dataclass(frozen=True)
class Offer:
    """One priced way to get the accelerators: an instance type on a cloud, in one or more regions."""

    accelerator: str
    count: float
    cloud: str
    regions: tuple[str, ...]
    instance_type: str | None
    gpu_memory_gb: float | None
    price_per_hour: float  # what this run would pay: the spot price with use_spot, else on-demand
    est_total_usd: float
    within_budget: bool

    @property
    def label(self) -> str:
        return accelerator_label(self.accelerator, self.count)

    @property
    def region(self) -> str:
        return self.regions[0] if self.regions else ""

    def as_row(self) -> dict[str, Any]:
        return {
            "accelerator": self.label,
            "cloud": self.cloud,
            "region": self.region,
            "regions": len(self.regions),
            "instance_type": self.instance_type,
            "gpu_memory_gb": self.gpu_memory_gb,
            "price_per_hour": self.price_per_hour,
            "est_total_usd": round(self.est_total_usd, 2),
            "within_budget": self.within_budget,
        }


@dataclass
class Plan:
    """Candidate offers ranked by price, the one SkyPilot's optimizer would take, and the budget verdict."""

    candidates: list[str]
    clouds: list[str]
    min_gpu_memory_gb: float
    use_spot: bool
    hours: float
    max_price_per_hour: float
    max_total_usd: float
    offers: list[Offer]
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> catalog rows left out
    catalog: str = ""

    @property
    def hourly_cap(self) -> float:
        """The $/hour no instance may exceed: the hourly cap, or the total cap spread over the hours."""
        return min(self.max_price_per_hour, self.max_total_usd / self.hours)

    @property
    def chosen(self) -> Offer | None:
        return next((o for o in self.offers if o.within_budget), None)

    def launchable(self) -> list[str]:
        """Candidates with at least one offer within budget and memory: the set handed to SkyPilot."""
        keep = {o.label for o in self.offers if o.within_budget}
        return [c for c in self.candidates if c in keep]

    def refusal(self) -> str | None:
        """Why nothing may launch, or None when an offer fits."""
        if self.chosen is not None:
            return None
        if not self.offers:
            why = "; ".join(f"{n} rows {reason}" for reason, n in sorted(self.excluded.items())) or "none in catalog"
            return (
                f"no offer for {', '.join(self.candidates)} on {', '.join(self.clouds) or 'no cloud'}"
                f"{f' with >= {self.min_gpu_memory_gb:g} GB GPU memory' if self.min_gpu_memory_gb else ''}"
                f"{' as spot' if self.use_spot else ''} ({why}); add candidates (accelerators), lower "
                "min_gpu_memory_gb, or enable another cloud (`sky check`)"
            )
        cheapest = self.offers[0]
        return (
            f"budget cap: the cheapest offer, {cheapest.label} on {cheapest.cloud} ({cheapest.instance_type}, "
            f"{cheapest.region}) at ${cheapest.price_per_hour:.2f}/h x {self.hours:g} h = "
            f"${cheapest.est_total_usd:.2f}, exceeds max_price_per_hour=${self.max_price_per_hour:.2f} or "
            f"max_total_usd=${self.max_total_usd:.2f}; nothing was launched. Raise a cap, lower "
            "estimated_hours, or add cheaper accelerators"
        )

    def raise_if_refused(self) -> Offer:
        reason = self.refusal()
        if reason is None:
            assert self.chosen is not None
            return self.chosen
        raise (NoOffers if not self.offers else BudgetExceeded)(reason)

    def format(self, limit: int | None = None) -> str:
        """A table of the ranked offers; '*' marks the one that would be chosen."""
        header = (
            "",
            "accelerator",
            "cloud",
            "region",
            "instance type",
            "GPU GB",
            "$/hour",
            f"$ x {self.hours:g}h",
            "budget",
        )
        rows = []
        chosen = self.chosen
        shown = self.offers if limit is None else self.offers[:limit]
        for offer in shown:
            regions = offer.region + (f" (+{len(offer.regions) - 1})" if len(offer.regions) > 1 else "")
            rows.append(
                (
                    "*" if offer is chosen else "",
                    offer.label,
                    offer.cloud,
                    regions,
                    offer.instance_type or "-",
                    "?" if offer.gpu_memory_gb is None else f"{offer.gpu_memory_gb:g}",
                    f"{offer.price_per_hour:.2f}",
                    f"{offer.est_total_usd:.2f}",
                    "ok" if offer.within_budget else "over",
                )
            )
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        summary = (
            f"candidates {', '.join(self.candidates)} on {', '.join(self.clouds) or '-'}"
            f"{f' ({self.catalog})' if self.catalog else ''}; GPU memory >= {self.min_gpu_memory_gb:g} GB; "
            f"{'spot' if self.use_spot else 'on-demand'}; caps ${self.max_price_per_hour:.2f}/h and "
            f"${self.max_total_usd:.2f} total over {self.hours:g} h (=> at most ${self.hourly_cap:.2f}/h)"
        )
        lines = [summary, "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
        lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        if limit is not None and len(self.offers) > limit:
            lines.append(f"... {len(self.offers) - limit} more offers")
        if self.excluded:
            lines.append("left out: " + ", ".join(f"{n} rows {r}" for r, n in sorted(self.excluded.items())))
        if chosen is not None:
            lines.append(
                f"chosen: {chosen.label} on {chosen.cloud} {chosen.region} ({chosen.instance_type}) at "
                f"${chosen.price_per_hour:.2f}/h, est. ${chosen.est_total_usd:.2f} for {self.hours:g} h"
            )
        else:
            lines.append(f"refused: {self.refusal()}")
        return "\n".join(lines)


def rank_offers(
    rows: Sequence[dict[str, Any]],
    *,
    candidates: Sequence[str],
    clouds: Sequence[str] = (),
    min_gpu_memory_gb: float = 0.0,
    use_spot: bool = False,
    hours: float = 1.0,
    max_price_per_hour: float = math.inf,
    max_total_usd: float = math.inf,
    region: str | None = None,
    catalog: str = "",
) -> Plan:
    """Rank catalog rows (the bridge's `offers`) for the candidate accelerators by $/hour.

    Rows of the same instance type at the same price in several regions collapse into one offer. Ties
    are broken by more GPU memory first, so the plan names what SkyPilot's optimizer would pick."""
    if hours <= 0:
        raise ValueError(f"hours must be positive, got {hours}")
    wanted = {}
    for spec in candidates:
        name, count = parse_accelerator(spec)
        wanted[(name.lower(), count)] = accelerator_label(name, count)
    groups, excluded = _group_rows(rows, wanted, min_gpu_memory_gb, use_spot, region)
    hourly_cap = min(max_price_per_hour, max_total_usd / hours)
    offers = [
        Offer(
            accelerator=g["accelerator"],
            count=g["count"],
            cloud=g["cloud"],
            regions=tuple(sorted(g["regions"])),
            instance_type=g["instance_type"],
            gpu_memory_gb=g["gpu_memory_gb"],
            price_per_hour=g["price"],
            est_total_usd=g["price"] * hours,
            within_budget=g["price"] <= hourly_cap + 1e-9,
        )
        for g in groups
    ]
    offers.sort(key=lambda o: (o.price_per_hour, -(o.gpu_memory_gb or 0), o.label, o.cloud, o.instance_type or ""))
    return Plan(
        candidates=list(wanted.values()),
        clouds=sorted({c.lower() for c in clouds}),
        min_gpu_memory_gb=min_gpu_memory_gb,
        use_spot=use_spot,
        hours=hours,
        max_price_per_hour=max_price_per_hour,
        max_total_usd=max_total_usd,
        offers=offers,
        excluded=excluded,
        catalog=catalog,
    )


def _group_rows(
    rows: Sequence[dict[str, Any]],
    wanted: dict[tuple[str, float], str],
    min_gpu_memory_gb: float,
    use_spot: bool,
    region: str | None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The rows of wanted accelerators grouped by (label, cloud, instance type, price, memory) with their
    regions, and how many rows each reason left out."""
    excluded: dict[str, int] = {}
    grouped: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = (str(row["accelerator"]).lower(), float(row["count"]))
        if key not in wanted:
            continue  # another count of a candidate (e.g. 8x A100 when A100:1 was asked)
        price = row.get("spot_price") if use_spot else row.get("price")
        memory = row.get("gpu_memory_gb")
        reason = _excluded_because(row, price, memory, min_gpu_memory_gb, use_spot, region)
        if reason:
            excluded[reason] = excluded.get(reason, 0) + 1
            continue
        label = wanted[key]
        group = grouped.setdefault(
            (label, row["cloud"], row.get("instance_type"), float(price), memory),
            {
                "accelerator": label.split(":")[0],
                "count": key[1],
                "cloud": row["cloud"],
                "instance_type": row.get("instance_type"),
                "gpu_memory_gb": memory,
                "price": float(price),
                "regions": set(),
            },
        )
        group["regions"].add(row.get("region") or "")
    return list(grouped.values()), excluded


def _excluded_because(
    row: dict[str, Any], price: Any, memory: Any, min_gpu_memory_gb: float, use_spot: bool, region: str | None
) -> str | None:
    """Why a catalog row of a wanted accelerator is left out, or None."""
    if region and row.get("region") != region:
        return f"outside region {region}"
    if price is None:
        return "without a spot price" if use_spot else "without a price"
    if min_gpu_memory_gb > 0 and (memory is None or memory < min_gpu_memory_gb):
        return f"below {min_gpu_memory_gb:g} GB GPU memory"
    return None
