"""Helpers for tests and benchmarks: an app running in this process, a logged-in client.

``free_port`` and ``wait_until_up`` live in :mod:`labeling_ui.serving` (product code uses them too) and are
re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from labeling_ui.serving import free_port, wait_until_up
from labeling_ui.store import LabelStore


@dataclass
class RunningApp:
    url: str
    store: LabelStore
    demo: Any

    def close(self) -> None:
        self.demo.close()


def start_app(db: str | Path, project: str = "p", *, overlap: int = 3, gold_rate: float = 0.0, lease_seconds: float = 600.0,
              export_dir: str | Path | None = None, guidelines: str = "Be kind.",
              reports_for: str = "admins", runs_dir: str | Path = "runs") -> RunningApp:
    """The real app on 127.0.0.1 (a free port) in this process, serving ``project`` of ``db``."""
    from labeling_ui.app import launch
    from labeling_ui.export import export_preferences
    from labeling_ui.queue import LabelQueue

    store = LabelStore(db)
    store.ensure_project(project, overlap)
    queue = LabelQueue(store, project, gold_rate=gold_rate, lease_seconds=lease_seconds)
    export_fn = (lambda: export_preferences(store, project, export_dir)) if export_dir else None
    port = free_port()
    demo = launch(store, queue, port=port, guidelines=guidelines, export_fn=export_fn, block=False,
                  reports_for=reports_for, runs_dir=runs_dir)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url)
    return RunningApp(url, store, demo)


class ApiClient:
    """A logged-in client of the bot API (``POST /gradio_api/run/<name>``)."""

    def __init__(self, url: str, name: str | None = None, password: str | None = None) -> None:
        self.http = httpx.Client(base_url=url, timeout=30, headers={"accept-encoding": "identity"})
        self.session_hash = f"api-{name or 'anon'}-{id(self):x}"
        if name is not None:
            r = self.http.post("/login", data={"username": name, "password": password})
            r.raise_for_status()

    def raw(self, api_name: str, *data: Any) -> httpx.Response:
        return self.http.post(f"/gradio_api/run/{api_name}", json={"data": list(data), "session_hash": self.session_hash})

    def call(self, api_name: str, *data: Any) -> Any:
        r = self.raw(api_name, *data)
        r.raise_for_status()
        return r.json()["data"][0]

    def close(self) -> None:
        self.http.close()
