"""Test helpers for the labeling app: the app running in this process (with the pipeline's run reports in
its Reports tab), a module's app as a fixture, a logged-in client of the bot API, and calls of the UI's
event handlers the way the browser makes them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from labeling_ui.serving import free_port, wait_until_up
from labeling_ui.store import LabelStore

#: A run's report page for the Reports tab: a style and an image, which the sandboxed frame must show.
MINI_REPORT = ("<!doctype html><html><head><style>#run-status { color: rgb(1, 2, 3); }</style></head><body>"
               "<h1 id='run-status'>passed</h1><img id='dot' alt='dot' src='data:image/png;base64,iVBORw0KGgoAAAANSUh"
               "EUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='></body></html>")


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
    """The real app on 127.0.0.1 (a free port) in this process, serving ``project`` of ``db``, its Reports
    tab drawn by the pipeline (as ``align-label serve`` draws it)."""
    from alignment.reports.run_report import RunReports
    from labeling_ui.app import launch
    from labeling_ui.export import export_preferences
    from labeling_ui.queue import LabelQueue

    store = LabelStore(db)
    store.ensure_project(project, overlap)
    queue = LabelQueue(store, project, gold_rate=gold_rate, lease_seconds=lease_seconds)
    export_fn = (lambda: export_preferences(store, project, export_dir)) if export_dir else None
    port = free_port()
    demo = launch(store, queue, port=port, guidelines=guidelines, export_fn=export_fn, block=False,
                  reports=RunReports(), reports_for=reports_for, runs_dir=runs_dir)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url)
    return RunningApp(url, store, demo)


def start_app_with_a_run(folder: Path, **options: Any) -> RunningApp:
    """:func:`start_app` on ``folder/labels.db`` whose Reports tab lists one run, ``runs/mini``, with
    :data:`MINI_REPORT` as its report."""
    run = folder / "runs" / "mini"
    run.mkdir(parents=True)
    (run / "pipeline.json").write_text("{}", encoding="utf-8")
    (run / "report.html").write_text(MINI_REPORT, encoding="utf-8")
    return start_app(folder / "labels.db", runs_dir=folder / "runs", **options)


def start_demo_app(db: str | Path, *, n_items: int, users: dict[str, str], password: str, overlap: int = 3,
                   **options: Any) -> RunningApp:
    """:func:`start_app` with ``n_items`` demo-world pairs queued in project ``p`` and ``users`` (name ->
    role) sharing ``password``."""
    from alignment.data.world import DemoWorld
    from labeling_ui.demo import demo_items

    running = start_app(db, overlap=overlap, **options)
    running.store.add_items("p", demo_items(DemoWorld(0), n_items), overlap=overlap)
    for name, role in users.items():
        running.store.add_annotator(name, password, role)
    return running


def app_fixture(name: str, *, n_items: int, users: dict[str, str], password: str, export: bool = False,
                **options: Any):
    """A module's app as a fixture: :func:`start_demo_app` in a fresh folder ``name`` (its admin tab
    exporting to ``export/`` there when ``export``), closed after the module."""
    @pytest.fixture(scope="module")
    def app(tmp_path_factory: pytest.TempPathFactory) -> RunningApp:
        folder = tmp_path_factory.mktemp(name)
        running = start_demo_app(folder / "labels.db", n_items=n_items, users=users, password=password,
                                 **options, **({"export_dir": folder / "export"} if export else {}))
        yield running
        running.close()
    return app


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


def queue_call(http: httpx.Client, fn_index: int, data: list, session_hash: str, timeout: float = 60) -> dict:
    """Call a UI event the way the browser does (queue/join + the SSE stream); the completion message."""
    r = http.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session_hash,
                                                 "event_data": None, "trigger_id": None}, timeout=timeout)
    if r.status_code != 200:
        return {"status": r.status_code, "success": False}
    with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session_hash}, timeout=timeout) as s:
        for line in s.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return msg
    raise AssertionError("no completion message")


def ui_call(app: RunningApp, client: ApiClient, name: str, *data: Any) -> tuple[bool, str]:
    """Call the UI event handler called ``name`` as ``client``: whether it succeeded, and everything it
    sent back (outputs and the completion message) as one text to search."""
    msg = queue_call(client.http, fn_index(app, name), list(data), client.session_hash)
    return msg["success"], json.dumps(msg.get("output"), ensure_ascii=False) + json.dumps(msg, ensure_ascii=False)


def fn_index(app: RunningApp, name: str) -> int:
    """The index of the UI event handler called ``name`` (what the browser posts as ``fn_index``)."""
    return next(i for i, fn in app.demo.fns.items() if fn.name == name)
