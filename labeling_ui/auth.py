"""Logins and sessions of the labeling app, on top of Gradio's ``auth=``.

Gradio keeps sessions in ``app.tokens`` (a dict: cookie token -> user name, filled by ``POST /login``,
read by every route through ``app.tokens.get(token)``) and, by default, ``GET /logout`` drops *every*
token of the user. This module makes that fit a labeling campaign:

* **Sessions in the database.** :class:`SessionTable` replaces ``app.tokens`` (Gradio's dict of one
  process's logins) with the store's ``sessions`` table, and every server of a campaign names its
  login cookie after the database's ``cookie_id`` setting (Gradio draws a random name per process):
  with several app servers on one PostgreSQL database behind a proxy, a cookie set by one server is
  honoured by the others, and a server restart logs nobody out.
* **Revocation.** Each account has a ``session_epoch`` in the store; a password change (``add-user
  --update``), a deactivation or a reactivation bumps it. A session remembers the epoch its login was
  checked under, and a lookup whose epoch no longer matches (or whose account is gone or deactivated)
  answers "no user", so the very next request with an old cookie gets 401, on every server at once,
  whichever process changed the account.
* **Logout ends one session.** ``GET /logout`` is always served with ``all_session=false``: logging
  out in one browser does not log the same person out of another.
* **Brute force.** :class:`LoginThrottle` counts failed logins per (account, client address): after
  :data:`MAX_FAILURES` failures within :data:`WINDOW_S`, that address is refused for that account with
  HTTP 429 until :data:`LOCKOUT_S` after its last failure, even with the right password. Other
  accounts and addresses are unaffected. A refused attempt is answered after :data:`REFUSAL_DELAY_S`
  (costing a sleeping coroutine only), which slows a scripted flood down. The name is not checked for
  existence first, so a 429 says nothing about which names exist; and an unknown name costs the same
  one scrypt as a wrong password (see :meth:`LabelStore.check_password`).
* **A flood cannot starve labeling.** Password checks run in worker threads behind their own
  :data:`SCRYPT_THREADS`-token limiter, not in the pool that serves the label handlers (whose tokens
  are then never taken by a login) nor on the event loop; and a throttled attempt costs no scrypt.

The client address is the socket's peer (``scope["client"]``): behind a reverse proxy every client
shares the proxy's address, so put the throttle there too or serve directly.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request

from labeling_ui.store import LabelStore

log = logging.getLogger(__name__)

#: Failed logins per (account, address) within :data:`WINDOW_S` that lock that pair out.
MAX_FAILURES = 10
WINDOW_S = 300.0
#: How long a locked-out pair is refused after its last failure.
LOCKOUT_S = 60.0
#: How long a refused (429) login attempt is held before the answer.
REFUSAL_DELAY_S = 1.0
#: Concurrent scrypt checks (each ~50-100 ms of one core and 16 MB): a login wave queues here
#: instead of taking cores and threads from the labeling handlers.
SCRYPT_THREADS = 1
#: Longer names are cut to this for the throttle and the check (account names have at most 64).
MAX_NAME_CHARS = 256
#: Pairs kept by the throttle at most (an attacker cycling through names cannot grow it without bound).
MAX_TRACKED = 100_000

#: The client address of the request being handled (set by :class:`AuthMiddleware`, read by the
#: ``auth=`` callable, which Gradio calls with the name and password only).
_CLIENT: contextvars.ContextVar[str] = contextvars.ContextVar("label_login_client", default="?")
#: The session epoch a successful password check was made under (read when Gradio stores the token).
_CHECKED_EPOCH: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar(
    "label_login_epoch", default=None)
#: The request's login cookie and whose session it is (``None``: none that holds), looked up by
#: :class:`AuthMiddleware` in a worker thread before Gradio's routes ask :class:`SessionTable`.
_SESSION: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar(
    "label_session", default=None)


class LoginThrottle:
    """Failed-login bookkeeping per (account, address); thread-safe, clock injectable for tests."""

    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S, lockout_s: float = LOCKOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._pending: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def begin(self, account: str, address: str) -> float:
        """Reserve one login attempt: 0 when it may go ahead (then :meth:`end` it), else the seconds to
        wait. Attempts in flight count as failures until they end, so concurrent guesses cannot slip
        more than :attr:`max_failures` past the limit."""
        with self._lock:
            now = self.clock()
            key = (account, address)
            times = self._recent(key, now)
            failures = len(times) if times else 0
            pending = self._pending.get(key, 0)
            if failures >= self.max_failures:
                wait = times[-1] + self.lockout_s - now
                if wait > 0:
                    return wait
                if pending:                  # after a lockout: one try at a time
                    return 1.0
            elif failures + pending >= self.max_failures:
                return 1.0
            self._pending[key] = pending + 1
            return 0.0

    def end(self, account: str, address: str, ok: bool) -> None:
        """Record how an attempt reserved by :meth:`begin` went (a success forgets the failures)."""
        with self._lock:
            now = self.clock()
            key = (account, address)
            left = self._pending.pop(key, 1) - 1
            if left > 0:
                self._pending[key] = left
            if ok:
                self._failures.pop(key, None)
                return
            times = self._recent(key, now)
            if times is None:
                if len(self._failures) >= MAX_TRACKED:
                    self._prune(now)
                times = self._failures[key] = deque(maxlen=self.max_failures)
            times.append(now)
            if len(times) == self.max_failures:
                log.warning("login: %d failures for %r from %s within %.0f s; locked out for %.0f s",
                            len(times), account, address, self.window_s, self.lockout_s)

    def _prune(self, now: float) -> None:
        for key in list(self._failures):
            self._recent(key, now)
        while len(self._failures) >= MAX_TRACKED:          # still full: forget the oldest pairs
            self._failures.pop(next(iter(self._failures)))


class SessionTable(dict):
    """``app.tokens`` kept in the database's ``sessions`` table (see the module doc): every app server
    on the database reads and writes the same sessions, so a login made on one is honoured by all, and
    a revocation is seen by all on their next request. Nothing is held in this process's memory."""

    def __init__(self, store: LabelStore) -> None:
        super().__init__()
        self.store = store

    def __setitem__(self, token: str, username: str) -> None:
        checked = _CHECKED_EPOCH.get()
        epoch = checked[1] if checked is not None and checked[0] == username else self.store.session_epoch(username)
        if epoch is not None:           # else deactivated between the password check and now
            self.store.open_session(token, username, epoch)

    def get(self, token: Any, default: Any = None) -> Any:
        if not isinstance(token, str) or not token:
            return default
        seen = _SESSION.get()
        # Gradio asks from async code, on the event loop: on PostgreSQL the answer the middleware looked
        # up for this request in a worker thread is used when it is about the same token, so that no
        # network round trip holds up the loop (and every other request of the server with it).
        username = seen[1] if seen is not None and seen[0] == token else self.store.session_user(token)
        return default if username is None else username

    def __getitem__(self, token: Any) -> str:
        username = self.get(token)
        if username is None:
            raise KeyError(token)
        return username

    def __contains__(self, token: Any) -> bool:
        return self.get(token) is not None

    def __delitem__(self, token: str) -> None:
        self.store.close_session(token)

    def pop(self, token: Any, *default: Any) -> Any:
        username = self.get(token)
        if isinstance(token, str):
            self.store.close_session(token)
        if username is None:
            if default:
                return default[0]
            raise KeyError(token)
        return username


class AuthMiddleware:
    """Pure ASGI middleware: installs the :class:`SessionTable` and the campaign's cookie id, notes the
    client address for the login check, and makes ``/logout`` end only the current session."""

    def __init__(self, app: Any, sessions: SessionTable, cookie_id: str) -> None:
        self.app = app
        self.sessions = sessions
        self.cookie_id = cookie_id

    async def _session(self, scope: dict) -> tuple[str, str | None] | None:
        """The request's login token and its account, read from the database in a worker thread."""
        cookies = Request(scope).cookies
        login = cookies.get(f"access-token-{self.cookie_id}") or cookies.get(f"access-token-unsecure-{self.cookie_id}")
        if not login:
            return None
        return login, await anyio.to_thread.run_sync(self.sessions.store.session_user, login)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] in ("http", "websocket"):
            server_app = scope.get("app")
            # Gradio's launch() resets app.tokens to a plain dict before serving: swap ours in before any
            # route (the login included) can use it. Gradio names its login cookie after a random id
            # per process; every server of the campaign uses the database's, so they read each other's.
            if server_app is not None and getattr(server_app, "tokens", None) is not self.sessions:
                server_app.tokens = self.sessions
                server_app.cookie_id = self.cookie_id
            path = scope.get("path", "").rstrip("/")
            if scope["type"] == "http" and path.endswith("/logout"):
                scope = dict(scope, query_string=b"all_session=false")
                # Gradio looks for the session under the Secure cookie's name only, which a browser does
                # not send over plain http: end the session of whichever login cookie came.
                cookies = Request(scope).cookies
                for name in (f"access-token-{self.cookie_id}", f"access-token-unsecure-{self.cookie_id}"):
                    if cookies.get(name):
                        await anyio.to_thread.run_sync(self.sessions.store.close_session, cookies[name])
            client = scope.get("client")
            token = _CLIENT.set(client[0] if client else "?")
            # PostgreSQL: looked up here, off the event loop; SQLite answers in microseconds, on the loop.
            session = _SESSION.set(await self._session(scope) if self.sessions.store.postgres else None)
            try:
                await self.app(scope, receive, send)
            finally:
                _SESSION.reset(session)
                _CLIENT.reset(token)
            return
        await self.app(scope, receive, send)


class Auth:
    """The pieces :func:`labeling_ui.app.launch` wires into Gradio: ``auth=`` and ``app_kwargs``."""

    def __init__(self, store: LabelStore, throttle: LoginThrottle | None = None) -> None:
        self.store = store
        self.throttle = throttle or LoginThrottle()
        self.sessions = SessionTable(store)
        cookie_id = store.setting("cookie_id")
        assert cookie_id, "schema revision 0003 writes the cookie id"
        self.cookie_id = cookie_id
        self._limiter = anyio.CapacityLimiter(SCRYPT_THREADS)

    async def check(self, username: str, password: str) -> bool:
        """Gradio's ``auth=`` callable. Raises HTTP 429 for a locked-out (account, address) pair."""
        address = _CLIENT.get()
        username = username[:MAX_NAME_CHARS]    # throttle keys stay small (real names have at most 64)
        wait = self.throttle.begin(username, address)
        if wait > 0:
            # A tarpit: a client that waits for each answer (as guessing scripts do) is slowed to a few
            # attempts a second per connection, at the cost of a sleeping coroutine (no thread, no CPU).
            await anyio.sleep(REFUSAL_DELAY_S)
            raise HTTPException(status_code=429, headers={"Retry-After": str(math.ceil(wait))},
                                detail=f"Too many failed logins; try again in {math.ceil(wait)} s.")
        ok = False
        try:
            epoch = self.store.session_epoch(username)   # read before the check: a change during it revokes
            ok = await anyio.to_thread.run_sync(self.store.check_password, username, password,
                                                limiter=self._limiter)
        finally:
            self.throttle.end(username, address, ok)
        if not ok or epoch is None:
            return False
        _CHECKED_EPOCH.set((username, epoch))
        return True

    def app_kwargs(self, base: dict[str, Any] | None = None) -> dict[str, Any]:
        """``launch(app_kwargs=...)``: ``base`` (other FastAPI arguments) plus this module's middleware,
        which must be given to the FastAPI app as it is created (none can be added once it serves)."""
        kwargs = dict(base or {})
        kwargs["middleware"] = [*kwargs.get("middleware", []),
                                Middleware(AuthMiddleware, sessions=self.sessions, cookie_id=self.cookie_id)]
        return kwargs
