"""Small helpers for serving the app: a free local port, and waiting until a started server answers.

Kept apart from :mod:`labeling_ui.app` so that they import neither Gradio nor the UI.
"""

from __future__ import annotations

import socket
import time

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, timeout: float = 60.0) -> None:
    """Wait until the server answers (401 for the config is an answer: it is up and wants a login)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url.rstrip("/") + "/gradio_api/app_id", timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up within {timeout} s")
