"""Accounts and sessions of the labeling app over real HTTP (issue 16): revocation on a password change
or deactivation, per-session logout, the failed-login throttle, and logins kept off the labeling path."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from label_app import ApiClient, RunningApp, app_fixture, fn_index, queue_call
from labeling_ui.auth import LOCKOUT_S, MAX_FAILURES, WINDOW_S, LoginThrottle

PASSWORD = "pass-word-1"


app = app_fixture("label-auth", n_items=20, overlap=3, password=PASSWORD,
                  users={**{name: "annotator" for name in ("alice", "carol", "dave", "erin", "frank")}, "root": "admin"})




def login(url: str, name: str, password: str, local_address: str | None = None) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=local_address) if local_address else None
    with httpx.Client(base_url=url, timeout=30, transport=transport) as http:
        return http.post("/login", data={"username": name, "password": password})


def test_a_password_change_revokes_open_sessions(app: RunningApp) -> None:
    old = ApiClient(app.url, "alice", PASSWORD)
    other = ApiClient(app.url, "carol", PASSWORD)
    assert old.call("next_item")["assignment"] is not None
    app.store.add_annotator("alice", "new-pass-word", update=True)      # what `add-user --update` does
    assert old.raw("next_item").status_code == 401
    assert old.http.get("/config").status_code == 401
    assert other.raw("next_item").status_code == 200                     # nobody else is logged out
    fresh = ApiClient(app.url, "alice", "new-pass-word")
    assert fresh.raw("next_item").status_code == 200
    for c in (old, other, fresh):
        c.close()


def test_deactivation_from_the_admin_tab_revokes_sessions(app: RunningApp) -> None:
    carol = ApiClient(app.url, "carol", PASSWORD)
    root = ApiClient(app.url, "root", PASSWORD)
    assert carol.raw("next_item").status_code == 200
    msg = queue_call(carol.http, fn_index(app, "on_deactivate"), ["carol"], carol.session_hash)
    assert msg["success"] is False and "Admins only" in json.dumps(msg)     # an annotator cannot
    msg = queue_call(root.http, fn_index(app, "on_deactivate"), ["carol"], root.session_hash)
    assert msg["success"] is True and "deactivated" in json.dumps(msg["output"])
    assert carol.raw("next_item").status_code == 401
    assert login(app.url, "carol", PASSWORD).status_code == 400
    msg = queue_call(root.http, fn_index(app, "on_deactivate"), ["root"], root.session_hash)
    assert "cannot deactivate your own" in json.dumps(msg["output"])
    msg = queue_call(root.http, fn_index(app, "on_reactivate"), ["carol"], root.session_hash)
    assert msg["success"] is True and "reactivated" in json.dumps(msg["output"])
    assert carol.raw("next_item").status_code == 401                         # the old session stays ended
    again = ApiClient(app.url, "carol", PASSWORD)
    assert again.raw("next_item").status_code == 200
    for c in (carol, root, again):
        c.close()


def test_logging_out_ends_only_that_session(app: RunningApp) -> None:
    laptop = ApiClient(app.url, "dave", PASSWORD)
    phone = ApiClient(app.url, "dave", PASSWORD)
    assert laptop.http.get("/logout").status_code in (302, 307)
    assert laptop.raw("next_item").status_code == 401
    assert phone.raw("next_item").status_code == 200
    laptop.close()
    phone.close()


@pytest.mark.slow
def test_failed_logins_are_throttled_per_account_and_address(app: RunningApp) -> None:
    for i in range(MAX_FAILURES):
        assert login(app.url, "erin", f"wrong-{i}").status_code == 400
    r = login(app.url, "erin", PASSWORD)                  # even the right password, from this address
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= LOCKOUT_S - 1
    assert login(app.url, "frank", PASSWORD).status_code == 200               # another account
    assert login(app.url, "erin", PASSWORD, local_address="127.0.0.2").status_code == 200   # another address
    for i in range(MAX_FAILURES):                          # an unknown name is throttled the same way
        assert login(app.url, "nobody", f"wrong-{i}").status_code == 400
    assert login(app.url, "nobody", "wrong").status_code == 429


def test_the_throttle_locks_out_for_a_minute_and_forgets_after_the_window() -> None:
    now = [0.0]
    t = LoginThrottle(clock=lambda: now[0])

    def fail(account: str = "a", address: str = "1.2.3.4") -> None:
        assert t.begin(account, address) == 0
        t.end(account, address, ok=False)

    for _ in range(MAX_FAILURES - 1):
        fail()
    assert t.begin("a", "1.2.3.4") == 0                     # the 10th attempt may go ahead ...
    t.end("a", "1.2.3.4", ok=False)                         # ... and fails: locked out
    assert t.begin("a", "1.2.3.4") == LOCKOUT_S
    assert t.begin("a", "5.6.7.8") == 0 and t.begin("b", "1.2.3.4") == 0   # others unaffected
    now[0] = LOCKOUT_S - 1
    assert t.begin("a", "1.2.3.4") > 0
    now[0] = LOCKOUT_S
    fail()                                                  # one more try, one more failure: a minute again
    assert t.begin("a", "1.2.3.4") == LOCKOUT_S
    now[0] += WINDOW_S
    assert t.begin("a", "1.2.3.4") == 0                     # the failures have left the window
    t.end("a", "1.2.3.4", ok=True)


def test_concurrent_guesses_cannot_exceed_the_limit() -> None:
    t = LoginThrottle(clock=lambda: 0.0)
    assert [t.begin("a", "x") for _ in range(MAX_FAILURES)] == [0.0] * MAX_FAILURES
    assert t.begin("a", "x") > 0                            # ten guesses in flight: the eleventh waits
    for _ in range(MAX_FAILURES):
        t.end("a", "x", ok=False)
    assert t.begin("a", "x") == LOCKOUT_S


@pytest.mark.slow
def test_labeling_answers_while_password_checks_are_stuck(app: RunningApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """More logins in flight than the server has worker threads must not stall the labeling handlers."""
    frank = ApiClient(app.url, "frank", PASSWORD)
    release = threading.Event()
    real = app.store.check_password

    def slow_check(name: str, password: str) -> bool:
        release.wait(60)            # a password check that takes as long as the test needs
        return real(name, password)

    monkeypatch.setattr(app.store, "check_password", slow_check)
    results: list[int] = []
    logins = [threading.Thread(target=lambda i=i: results.append(login(app.url, f"x{i}", "wrong").status_code))
              for i in range(48)]   # launch()'s default max_threads is 40
    for th in logins:
        th.start()
    try:
        msg = queue_call(frank.http, fn_index(app, "on_load"), [], frank.session_hash, timeout=30)
        assert msg["success"] is True and not release.is_set()
        assert frank.call("my_progress")["labeled"] == 0
    finally:
        release.set()
        for th in logins:
            th.join()
        frank.close()
    assert results == [400] * 48
