"""The peak resident memory of this process, resettable, so each pipeline stage gets its own figure.

``ru_maxrss`` only ever grows over a process's life, so in a pipeline it would credit every stage with
the largest before it. Linux resets the peak (``VmHWM``) when ``5`` is written to
``/proc/self/clear_refs``; elsewhere the figure is the process's peak so far (``ru_maxrss``).
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def reset_peak_rss() -> bool:
    """Start a new peak from the current resident memory; ``False`` where the OS cannot."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The peak resident memory since the last :func:`reset_peak_rss` (or since the start), in MiB."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
