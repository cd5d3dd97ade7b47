"""An RLHF alignment pipeline: labeling app, reward model, PPO, and a safety filter after every stage."""

import os
from pathlib import Path

# OpenMP threads that spin while waiting slow torch down several times over whenever another process
# shares the CPU (docs/experiments.md). Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

#: The repository root (where ``conf/`` lives); the project is installed in editable mode.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"
