"""Stage gates: thresholds on measured figures that fail a stage, with a verdict saying by how much.

A stage computes its figures, writes its reports *including* the verdicts, and only then exits with
:data:`EXIT_GATE_FAILED` when any gate failed, so a failed stage still leaves a full report behind.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

#: Exit status of a stage that finished but failed a gate.
EXIT_GATE_FAILED = 3


@dataclass(frozen=True)
class GateVerdict:
    gate: str
    measured: float
    threshold: float
    #: ``"max"``: measured must not exceed threshold; ``"min"``: must not fall below it.
    kind: str
    passed: bool

    @property
    def message(self) -> str:
        op = "<=" if self.kind == "max" else ">="
        verdict = "passed" if self.passed else f"FAILED by {abs(self.measured - self.threshold):.4g}"
        return f"gate {self.gate}: measured {self.measured:.4g}, required {op} {self.threshold:.4g}: {verdict}"


def check_max(gate: str, measured: float, threshold: float | None) -> GateVerdict | None:
    if threshold is None:
        return None
    return GateVerdict(gate, float(measured), float(threshold), "max", measured <= threshold)


def check_min(gate: str, measured: float, threshold: float | None) -> GateVerdict | None:
    if threshold is None:
        return None
    return GateVerdict(gate, float(measured), float(threshold), "min", measured >= threshold)


def summarise(verdicts: list[GateVerdict | None]) -> dict:
    """The gates section of a stage's ``safety.json``; logs every verdict."""
    checked = [v for v in verdicts if v is not None]
    for v in checked:
        (log.info if v.passed else log.error)("%s", v.message)
    return {"passed": all(v.passed for v in checked),
            "verdicts": [{**asdict(v), "message": v.message} for v in checked]}


def exit_status(gates: dict) -> int:
    return 0 if gates["passed"] else EXIT_GATE_FAILED
