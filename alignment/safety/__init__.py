"""The safety filter: one protocol (:mod:`alignment.safety.filter`), backends chosen by name.

``build_filter(cfg.safety)`` returns the configured backend; see :mod:`alignment.safety.backends`
(``fast``, ``default``) and :mod:`alignment.safety.hf_backends` (``classifier``, ``llama_guard``).
Imports are lazy so that ``import alignment.safety.categories`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alignment.safety.backends import build_filter
    from alignment.safety.filter import BaseFilter, SafetyFilter, Verdict

__all__ = ["BaseFilter", "SafetyFilter", "Verdict", "build_filter"]


def __getattr__(name: str):
    if name == "build_filter":
        from alignment.safety.backends import build_filter

        return build_filter
    if name in ("BaseFilter", "SafetyFilter", "Verdict"):
        from alignment.safety import filter as _filter

        return getattr(_filter, name)
    raise AttributeError(f"module 'alignment.safety' has no attribute {name!r}")
