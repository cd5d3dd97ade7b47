"""HTTP hardening of the Gradio server: security headers on every response, Gradio's routes that the
labeling app does not use answer 404, and malformed event requests a 4xx (Gradio answered them with 500
or a dropped connection: an unknown ``fn_index`` or API name, too few arguments, a body that is not a
JSON object, the event stream of a session that never joined).

Gradio serves more than this app needs. Turned off here, in front of Gradio's own routing:

* ``/gradio_api/upload`` (and its progress stream): any logged-in annotator could store files of any
  size in the server's temp folder; no component of the app takes a file. ``max_file_size`` is set to
  one byte as well, so that a route we do not know of refuses files too.
* ``/openapi.json`` (FastAPI's own, which Gradio left public), ``/gradio_api/openapi.json``, ``/docs``,
  ``/redoc``: a machine-readable map of every endpoint, for nobody (the bot API is documented in
  :mod:`labeling_ui.app`).
* ``/gradio_api/call/...``: Gradio's second REST API for queued events. The app's API is
  ``/gradio_api/run/<name>`` (unqueued) and the browser uses the queue's ``join``/``data``; these
  routes answered 500 for the app's own endpoints.
* Gradio features the app has no component or use for: ``/gradio_api/stream/...`` (media streams),
  ``/gradio_api/process_recording`` (audio), ``/gradio_api/runs`` and ``/gradio_api/run-history/...``
  (run history), ``/gradio_api/dev/...`` and the ``vibe-`` editor routes (development mode),
  ``/gradio_api/component_server`` and ``/gradio_api/custom_component/...`` (server functions and
  custom components), ``/gradio_api/deep_link``, ``/monitoring``, ``/gradio_api/mcp``, the
  ``/gradio_api/proxy=`` fetcher for Hugging Face Spaces, and the ``/gradio_api/file=`` /
  ``/gradio_api/file/`` file routes (the app serves no files).

Every response, including these 404s and Gradio's 401s, carries:

* ``Content-Security-Policy``: everything from this origin only (no remote script, style, font,
  image or connection, so hostile text that escaped the escaping still could not load or send
  anything), no plugins, ``frame-ancestors 'self'`` (no clickjacking), ``form-action 'self'``,
  ``base-uri 'self'``. Scripts need ``'unsafe-inline'`` (Gradio's page carries its config and our
  keyboard shortcuts inline) and ``'unsafe-eval'`` (``gr.HTML`` renders its template with
  ``new Function``); styles need ``'unsafe-inline'`` (Svelte's inline styles). Frames may show this
  origin and ``about:srcdoc`` (the sandboxed report of the Reports tab, which inherits this policy).
* ``X-Frame-Options: SAMEORIGIN`` (older browsers), ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "media-src 'self'",
    "frame-src 'self' about:",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'self'",
])

SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "SAMEORIGIN",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}

#: Paths (exact) and path prefixes of Gradio routes the app does not use; they answer 404.
BLOCKED_PATHS = frozenset({
    "/gradio_api/upload", "/gradio_api/upload/", "/gradio_api/upload_progress", "/gradio_api/upload_progress/",
    "/gradio_api/openapi.json", "/docs", "/redoc", "/openapi.json",
    "/gradio_api/process_recording", "/gradio_api/process_recording/",
    "/gradio_api/runs", "/gradio_api/runs/", "/gradio_api/deep_link", "/gradio_api/deep_link/",
    "/gradio_api/component_server", "/gradio_api/component_server/",
    "/monitoring", "/monitoring/summary",
})
BLOCKED_PREFIXES = ("/gradio_api/call/", "/gradio_api/stream/", "/gradio_api/run-history/", "/gradio_api/mcp",
                    "/gradio_api/proxy=", "/gradio_api/file=", "/gradio_api/file/", "/monitoring/",
                    "/gradio_api/dev/", "/gradio_api/vibe-", "/gradio_api/undo-vibe-edit",
                    "/gradio_api/custom_component/")

#: The most bytes an upload may have, for Gradio's ``launch(max_file_size=...)``: the app takes none.
MAX_FILE_SIZE = 1


def is_blocked(path: str) -> bool:
    """Whether ``path`` (without the root path) is a Gradio route the app turns off."""
    return path in BLOCKED_PATHS or path.startswith(BLOCKED_PREFIXES)


#: Routes whose JSON body names a Gradio event (``fn_index``) or an API endpoint and its arguments.
_EVENT_ROUTES = ("/gradio_api/queue/join", "/gradio_api/run/", "/gradio_api/api/")
#: The largest event body accepted: a label with a long note is a few kB.
MAX_EVENT_BODY = 1 << 20


def check_event(blocks: Any, path: str, body: bytes) -> tuple[int, str] | None:
    """``(status, reason)`` when an event request could not work, ``None`` when it is well formed.

    Gradio answers 500 (or drops the connection) for an unknown ``fn_index`` or API name and for too few
    arguments; these are the client's mistakes and get a 4xx here instead: the event must exist, an API
    name must be a public endpoint (the same one as ``fn_index`` if both are given), and ``data`` must be a
    list with a value for every input."""
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        return 400, "the body is not JSON"
    if not isinstance(payload, dict):
        return 400, "the body must be a JSON object"
    data = payload.get("data", [])
    if not isinstance(data, list):
        return 400, "data must be a list"
    fns = {fn._id: fn for fn in blocks.fns.values()}
    fn_index = payload.get("fn_index")
    if fn_index is not None and (isinstance(fn_index, bool) or not isinstance(fn_index, int) or fn_index not in fns):
        return 404, f"no event {fn_index!r}"
    if path.startswith("/gradio_api/queue/join"):
        if fn_index is None:
            return 400, "fn_index is required"
        fn = fns[fn_index]
    else:
        name = path.split("/", 3)[3].rstrip("/")
        named = [fn for fn in fns.values() if fn.api_name == name and fn.api_visibility == "public"]
        if not named:
            return 404, f"no API endpoint {name!r}"
        fn = named[0]
        if fn_index is not None and fn_index != fn._id:
            return 400, f"fn_index {fn_index} is not the endpoint {name!r}"
    if len(data) < len(fn.inputs):
        return 400, f"{fn.api_name or fn.name} expects {len(fn.inputs)} value(s) in data, got {len(data)}"
    return None


class HardenedApp:
    """ASGI middleware: 404 for :func:`is_blocked` paths, a 4xx for malformed events (:func:`check_event`),
    :data:`SECURITY_HEADERS` on every response."""

    def __init__(self, app: ASGIApp, blocks: Any) -> None:
        self.app = app
        self.blocks = blocks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root):] or "/"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        async def refuse(status: int, detail: str) -> None:
            body = json.dumps({"detail": detail}).encode()
            await send_with_headers({"type": "http.response.start", "status": status,
                                     "headers": [(b"content-type", b"application/json"),
                                                 (b"content-length", str(len(body)).encode())]})
            await send_with_headers({"type": "http.response.body", "body": body})

        if is_blocked(path):
            await refuse(404, "Not Found")
            return
        if scope["method"] == "GET" and path.rstrip("/") == "/gradio_api/queue/data" and _logged_in(scope):
            # Gradio starts this event stream before it looks the session up, then fails mid-stream.
            session = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash", [""])[0]
            if session not in self.blocks._queue.pending_messages_per_session:
                await refuse(404, "no events for this session")
                return
        if scope["method"] == "POST" and path.startswith(_EVENT_ROUTES) and _logged_in(scope):
            chunks, size = [], 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return                                   # the client went away
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > MAX_EVENT_BODY:
                    await refuse(413, f"the request body is over {MAX_EVENT_BODY} bytes")
                    return
                if not message.get("more_body"):
                    break
            body = b"".join(chunks)
            problem = check_event(self.blocks, path, body)
            if problem:
                await refuse(*problem)
                return
            replayed = False

            async def receive_again() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, receive_again, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def _logged_in(scope: Scope) -> bool:
    """Whether the request carries a Gradio auth cookie: without one Gradio answers 401 itself, and a
    stranger learns nothing from our checks (nor makes us parse a body)."""
    for name, value in scope.get("headers", []):
        if name == b"cookie" and b"access-token" in value:
            return True
    return False


def launch_options(blocks: Any) -> dict[str, Any]:
    """Keyword arguments for ``blocks.launch``: the middleware (through FastAPI's ``middleware=``, as
    Gradio builds its app inside ``launch``) and the upload limit."""
    return {"app_kwargs": {"middleware": [Middleware(HardenedApp, blocks=blocks)]}, "max_file_size": MAX_FILE_SIZE}
