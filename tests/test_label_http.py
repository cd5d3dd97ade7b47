"""The labeling app's HTTP surface: Gradio features it does not use are off, every response carries the
security headers, every route works or answers a clean 4xx, and the Reports tab is for admins."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from label_app import ApiClient, RunningApp, app_fixture, queue_call, start_app

PASSWORD = "pass-word-1"


app = app_fixture("label-http", n_items=6, overlap=2, users={"ann": "annotator", "root": "admin"},
                  password=PASSWORD)


@pytest.fixture
def ann(app: RunningApp) -> ApiClient:
    c = ApiClient(app.url, "ann", PASSWORD)
    yield c
    c.close()


def _routes(app: RunningApp) -> list[tuple[str, str]]:
    """(method, path) of every route the server has, path parameters filled with a dummy value."""
    def flat(routes):
        for r in routes:
            if hasattr(r, "original_router"):
                yield from flat(r.original_router.routes)
            else:
                yield r
    out = []
    for r in flat(app.demo.app.routes):
        path = getattr(r, "path", None)
        if path is None or path.startswith("/logout"):
            continue
        for method in sorted((getattr(r, "methods", None) or {"GET"}) - {"HEAD"}):
            out.append((method, re.sub(r"\{[^}]+\}", "x", path)))
    return out



def _status(client: httpx.Client, method: str, path: str, **kw) -> httpx.Response:
    if method == "GET":
        with client.stream("GET", path, timeout=10, **kw) as r:       # event streams: the status is enough
            return r
    return client.request(method, path, timeout=10, **kw)


def test_every_response_carries_the_security_headers(app: RunningApp, ann: ApiClient) -> None:
    anon = httpx.Client(base_url=app.url)
    for client, path in ((anon, "/"), (anon, "/config"), (anon, "/gradio_api/upload"), (ann.http, "/"),
                         (ann.http, "/config"), (ann.http, "/theme.css"), (ann.http, "/gradio_api/info")):
        h = client.get(path).headers
        csp = h.get("content-security-policy", "")
        assert "frame-ancestors 'self'" in csp and "default-src 'self'" in csp and "object-src 'none'" in csp, path
        assert h.get("x-frame-options") == "SAMEORIGIN" and h.get("x-content-type-options") == "nosniff", path
        assert h.get("referrer-policy") == "no-referrer", path
    assert "https:" not in csp and "*" not in csp                       # nothing from elsewhere
    r = ann.raw("next_item")
    assert r.status_code == 200 and "frame-ancestors 'self'" in r.headers["content-security-policy"]
    anon.close()


def test_uploads_are_refused(app: RunningApp, ann: ApiClient) -> None:
    from gradio.utils import get_upload_folder

    uploads = Path(get_upload_folder())
    tmp_before = set(uploads.rglob("*"))
    for path in ("/gradio_api/upload", "/gradio_api/upload?upload_id=abc"):
        r = ann.http.post(path, files={"files": ("big.bin", b"x" * 200_000, "application/octet-stream")})
        assert 400 <= r.status_code < 500, (path, r.status_code)
    assert ann.http.get("/gradio_api/upload_progress", params={"upload_id": "abc"}).status_code == 404
    assert not {p for p in set(uploads.rglob("*")) - tmp_before if p.name == "big.bin"}
    config = ann.http.get("/config").json()
    assert config["max_file_size"] is not None and config["max_file_size"] <= 1


def test_the_api_schema_and_docs_are_not_served(app: RunningApp, ann: ApiClient) -> None:
    anon = httpx.Client(base_url=app.url)
    for client in (anon, ann.http):
        for path in ("/gradio_api/openapi.json", "/openapi.json", "/docs", "/redoc"):
            r = client.get(path)
            assert r.status_code in (401, 404), (path, r.status_code)
            assert "next_item" not in r.text and "submit_label" not in r.text
    anon.close()


def test_every_route_works_or_answers_a_clean_4xx(app: RunningApp, ann: ApiClient) -> None:
    anon = httpx.Client(base_url=app.url)
    failures = []
    for method, path in _routes(app):
        for who, client in (("annotator", ann.http), ("anonymous", anon)):
            r = _status(client, method, path, **({} if method == "GET" else {"json": {}}))
            if r.status_code >= 500:
                failures.append(f"{who} {method} {path}: {r.status_code}")
    # Gradio's own REST API for the app's endpoints, and malformed events, answered 500 before
    for path, body in (("/gradio_api/call/v2/next_item", {}), ("/gradio_api/call/next_item", {"data": []}),
                       ("/gradio_api/call/v2/submit_label", {"assignment": 1}),
                       ("/gradio_api/run/no_such_api", {"data": []}),
                       ("/gradio_api/run/submit_label", {"data": []}),
                       ("/gradio_api/run/skip_item", {"data": [], "fn_index": 10_000}),
                       ("/gradio_api/run/next_item", {"data": "x"}),
                       ("/gradio_api/queue/join", {"data": [], "fn_index": 10_000, "session_hash": "s"}),
                       ("/gradio_api/queue/join", {"data": [], "fn_index": "x", "session_hash": "s"})):
        r = ann.http.post(path, json=body)
        if not 400 <= r.status_code < 500:
            failures.append(f"POST {path} {json.dumps(body)}: {r.status_code}")
    r = ann.http.post("/gradio_api/run/next_item", content=b"{not json", headers={"content-type": "application/json"})
    if r.status_code != 400:
        failures.append(f"POST /gradio_api/run/next_item with a broken body: {r.status_code}")
    r = _status(ann.http, "GET", "/gradio_api/queue/data?session_hash=never-joined")
    if r.status_code != 404:
        failures.append(f"GET /gradio_api/queue/data for an unknown session: {r.status_code}")
    assert failures == []
    # ... and what the app uses still works
    assert ann.call("next_item")["assignment"] is not None
    anon.close()


def test_reports_are_for_admins_unless_configured(app: RunningApp, ann: ApiClient, tmp_path: Path) -> None:
    def call(client: ApiClient, running: RunningApp, name: str) -> dict:
        index = next(i for i, fn in running.demo.fns.items() if fn.name == name)
        return queue_call(client.http, index, [None] if name == "on_pick_run" else [], client.session_hash)

    for name in ("on_runs", "on_pick_run"):
        msg = call(ann, app, name)
        assert msg["success"] is False and "admins only" in json.dumps(msg).lower(), msg
    root = ApiClient(app.url, "root", PASSWORD)
    assert call(root, app, "on_runs")["success"] is True
    root.close()

    everyone = start_app(tmp_path / "labels.db", reports_for="everyone")
    try:
        everyone.store.add_annotator("ann", PASSWORD, "annotator")
        client = ApiClient(everyone.url, "ann", PASSWORD)
        assert call(client, everyone, "on_runs")["success"] is True
        client.close()
    finally:
        everyone.close()


def test_reports_for_is_validated_by_the_config(tmp_path: Path) -> None:
    from alignment.labeling import compose, main

    assert compose([]).label.reports_for.value == "admins"
    assert compose(["label.reports_for=everyone"]).label.reports_for.value == "everyone"
    assert main(["stats", f"run.dir={tmp_path}", "label.reports_for=all"]) == 2


def test_an_event_does_not_switch_matplotlib_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradio sets the "agg" backend around every event and restores the one before: any other backend
    would cost two pyplot backend switches per request."""
    import gradio.utils
    import matplotlib.pyplot as plt

    import labeling_ui.app  # noqa: F401

    switches = []
    monkeypatch.setattr(plt, "switch_backend", lambda name: switches.append(name))
    with gradio.utils.MatplotlibBackendMananger():
        pass
    assert switches == []
