"""Where training runs: `local` (a subprocess on this machine) or `skypilot` (the cheapest GPU in the cloud).

The `skypilot` backend builds a managed job from `sky/train.yaml`, offers a *set* of candidate
accelerators so SkyPilot's optimizer picks the cheapest, ranks the same candidates beforehand from
SkyPilot's own price catalog (filtered by the GPU memory the model needs) and refuses to launch above
the budget caps. SkyPilot lives in its own environment (`.venv-sky`, see `sky_bridge.py` for why), so
every SkyPilot call goes through `.venv-sky/bin/python nexa_resources/sky_bridge.py`; the calls that
reach a cloud go through one seam, `sky_client()` (a `BridgeSkyClient`, replaced by a fake in tests).

Modules: plan (price ranking), bridge (the SkyPilot bridge and seam), catalog (price snapshots), runners
(local subprocess, managed jobs), resource (ComputeResource), errors. This package's names are its API.
"""

from nexa_resources.compute.bridge import (
    BRIDGE_SCRIPT,
    REPO_ROOT,
    SKY_VENV_PYTHON,
    TAIL_LINES,
    BridgeSkyClient,
    SkyBridge,
    SkyClientLike,
    override_sky_client,
    sky_python,
)
from nexa_resources.compute.catalog import catalog_runtime, snapshot_clouds
from nexa_resources.compute.errors import (
    BudgetExceeded,
    ComputeError,
    NoCloudCredentials,
    NoOffers,
    SkyBridgeError,
    SkyPilotNotInstalled,
    TrainingFailed,
)
from nexa_resources.compute.plan import Offer, Plan, accelerator_label, parse_accelerator, rank_offers
from nexa_resources.compute.resource import (
    BACKENDS,
    BUCKET_MOUNT,
    DEFAULT_ACCELERATORS,
    SERVE_TEACHER_YAML,
    TRAIN_TASK_YAML,
    ComputeResource,
)
from nexa_resources.compute.runners import (
    TrainRun,
    job_name,
    local_accelerator,
    read_metrics,
    training_job_name,
)

__all__ = [
    "BACKENDS",
    "BRIDGE_SCRIPT",
    "BUCKET_MOUNT",
    "DEFAULT_ACCELERATORS",
    "REPO_ROOT",
    "SERVE_TEACHER_YAML",
    "SKY_VENV_PYTHON",
    "TAIL_LINES",
    "TRAIN_TASK_YAML",
    "BridgeSkyClient",
    "BudgetExceeded",
    "ComputeError",
    "ComputeResource",
    "NoCloudCredentials",
    "NoOffers",
    "Offer",
    "Plan",
    "SkyBridge",
    "SkyBridgeError",
    "SkyClientLike",
    "SkyPilotNotInstalled",
    "TrainRun",
    "TrainingFailed",
    "accelerator_label",
    "catalog_runtime",
    "job_name",
    "local_accelerator",
    "override_sky_client",
    "parse_accelerator",
    "rank_offers",
    "read_metrics",
    "sky_python",
    "snapshot_clouds",
    "training_job_name",
]
