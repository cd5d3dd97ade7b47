"""A policy's safety rates as stages record them in ``safety.json``: read without torch, by the
stages that compare themselves with an earlier one and by the run report.
"""

from __future__ import annotations

import json
from pathlib import Path


def policy_rate(policy: dict | None, key: str) -> float | None:
    """A rate from the ``policy`` section of a stage's ``safety.json`` (``{key: {"rate": ...}}``) or from
    the plain rates an earlier stage's were read into (``{key: rate}``); ``None`` where there is none."""
    value = (policy or {}).get(key)
    return value.get("rate") if isinstance(value, dict) else value


PREVIOUS_KEYS = ("unsafe_rate", "refusal_rate_harmful", "over_refusal_rate_benign")


def previous_policy_rates(path: Path | None) -> dict | None:
    """The red-team unsafe, refusal and benign over-refusal rates recorded in an earlier stage's
    ``safety.json``, when there is one."""
    if path is None or not path.is_file():
        return None
    policy = json.loads(path.read_text()).get("policy", {})
    return {k: policy[k]["rate"] for k in PREVIOUS_KEYS if isinstance(policy.get(k), dict)}


def previous_unsafe_rate(path: Path | None) -> float | None:
    """The red-team unsafe rate recorded in an earlier stage's ``safety.json``, when there is one."""
    return (previous_policy_rates(path) or {}).get("unsafe_rate")
