"""What every ``scripts/bench_*.py`` shares: run a stage as a user runs it, time it, report one JSON line.

Only the standard library, so a benchmark's worker can import it from another interpreter (bench_ppo's
TRL virtualenv). Every benchmark reports the machine's state under the same keys (:func:`machine`):
``load_avg_start``, ``load_avg_end`` (1-minute load averages: timings on a busy machine are not
comparable) and ``cpus``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The 1-minute load average when this module was imported, i.e. when the benchmark started.
LOAD_AT_START = os.getloadavg()[0]


def setup(name: str) -> logging.Logger:
    """Human-readable progress on stderr, through ``logging``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return logging.getLogger(name)


def arg_parser(doc: str, command: str, *, run_dir: bool = False) -> argparse.ArgumentParser:
    """The benchmark's command line: its docstring as help, Hydra overrides for ``command`` as the
    positional arguments, and with ``run_dir`` a ``--run-dir`` to keep the run (default: a temporary folder)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if run_dir:
        parser.add_argument("--run-dir", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help=f"extra Hydra overrides for {command}")
    return parser


def machine() -> dict[str, Any]:
    """The load the figures were measured under, under the same keys in every benchmark."""
    return {"load_avg_start": round(LOAD_AT_START, 2), "load_avg_end": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count()}


def run_module(module: str, *args: str, check: bool = True) -> tuple[int, float]:
    """``python -m module args...`` in the project root, as a user runs it; its exit status and wall seconds."""
    command = [sys.executable, "-m", module, *args]
    logging.getLogger("bench").info("running: %s (load average %.1f)", " ".join(command), os.getloadavg()[0])
    started = time.time()
    status = subprocess.run(command, cwd=ROOT).returncode
    wall = time.time() - started
    if check and status != 0:
        sys.exit(f"{module} exited with status {status}")
    return status, wall


def read_json(path: Path) -> dict[str, Any]:
    """A stage's JSON output, or ``{}`` when the stage did not write it (a failed run is still reported)."""
    return json.loads(path.read_text()) if path.is_file() else {}


def emit(figures: dict[str, Any]) -> None:
    """The benchmark's last line: its figures and the machine's load, as one JSON object."""
    print(json.dumps({**figures, **machine()}), flush=True)
