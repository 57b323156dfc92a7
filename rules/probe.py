"""Defaults of the agent's own check (`x-podium-probe`, the API's Probe): one set for the Compose
parser, which writes them into the Probe, and the agent, which applies them to a Probe whose
fields an API caller left at zero."""

from __future__ import annotations

INTERVAL_S = 10.0
TIMEOUT_S = 2.0
RETRIES = 3
START_PERIOD_S = 0.0
STATUS_MIN = 200  # an HTTP check passes on a status within [STATUS_MIN, STATUS_MAX]
STATUS_MAX = 399
