"""Sensors that close the loop: feedback (weak cells → a refresh round) and arrival (new input files)."""

from __future__ import annotations

import dagster as dg

from nexa_jobs.arrival import arrival_sensor
from nexa_jobs.feedback_sensor import feedback_sensor

SENSORS: list[dg.SensorDefinition] = [feedback_sensor, arrival_sensor]
