"""Why a training or eval run could not start or finish: each a `dagster.Failure` whose message says what to do."""

from __future__ import annotations

import dagster as dg


class ComputeError(dg.Failure, RuntimeError):
    """A training run could not be started or did not finish; the message says what to do.

    A `dagster.Failure`, so an asset that lets it through fails with this message, not a stack trace."""

    def __init__(self, message: str):
        super().__init__(description=message)


class SkyPilotNotInstalled(ComputeError):
    """`.venv-sky` (SkyPilot's own environment) is missing."""


class NoCloudCredentials(ComputeError):
    """SkyPilot sees no cloud it may launch on."""


class BudgetExceeded(ComputeError):
    """Every candidate offer costs more than the budget caps allow."""


class NoOffers(ComputeError):
    """No catalog offer matches the candidates, the GPU memory floor, the region or spot."""


class TrainingFailed(ComputeError):
    """The trainer (local subprocess or managed job) ended without success."""


class SkyBridgeError(ComputeError):
    """A call into SkyPilot (through the bridge) raised; the message carries SkyPilot's own words."""
