"""The admin tab's account tools through the app's real event channel: add an account, reset a password
(the account's open sessions end), refusals in the caller's language, and admins only."""

from __future__ import annotations

import json

import pytest

from labeling_ui.i18n import ZH_CN
from labeling_ui.testing import ApiClient, RunningApp, fn_index, queue_call, start_demo_app

PASSWORD = "admin-tools-123"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> RunningApp:
    tmp = tmp_path_factory.mktemp("label-admin")
    running = start_demo_app(tmp / "labels.db", n_items=4, users={"root": "admin", "carol": "annotator"},
                             password=PASSWORD)
    yield running
    running.close()


def _call(app: RunningApp, client: ApiClient, name: str, *data) -> tuple[bool, str]:
    msg = queue_call(client.http, fn_index(app, name), list(data), client.session_hash)
    return msg["success"], json.dumps(msg.get("output"), ensure_ascii=False) + json.dumps(msg, ensure_ascii=False)


def test_an_admin_adds_accounts_and_resets_passwords(app: RunningApp) -> None:
    root = ApiClient(app.url, "root", PASSWORD)
    ok, out = _call(app, root, "on_add_account", "erin", "erin-pass-1", "annotator")
    assert ok and "Account **erin** added (annotator)" in out
    erin = ApiClient(app.url, "erin", "erin-pass-1")
    assert erin.raw("next_item").status_code == 200
    assert app.store.annotator("erin").role == "annotator"

    ok, out = _call(app, root, "on_add_account", "erin", "another-pass", "admin")
    assert ok and "already exists" in out and app.store.annotator("erin").role == "annotator"
    for name, password in (("short", "1234"), ("bad\tname", "long-enough-1"), ("x" * 65, "long-enough-1"),
                           ("", "long-enough-1")):
        ok, out = _call(app, root, "on_add_account", name, password, "annotator")
        assert ok and "Not saved" in out, (name, out)
    assert {a.name for a in app.store.annotators()} == {"root", "carol", "erin"}
    ok, out = _call(app, root, "on_add_account", "fred", "fred-pass-1", "superuser")
    assert not ok and "not in the list of choices" in out and app.store.annotator("fred") is None

    # a reset: the old password and the sessions opened with it are done; the new one works
    ok, out = _call(app, root, "on_reset_password", "erin", "erin-pass-2")
    assert ok and "Password of **erin** reset" in out
    assert erin.raw("next_item").status_code == 401
    assert ApiClient(app.url, "erin", "erin-pass-2").raw("next_item").status_code == 200
    ok, out = _call(app, root, "on_reset_password", "nobody", "whatever-123")
    assert ok and "No account is named **nobody**" in out
    ok, out = _call(app, root, "on_reset_password", "erin", "short")
    assert ok and "Not saved" in out
    app.store.deactivate_annotator("erin")             # a reset does not let a deactivated account back in
    ok, out = _call(app, root, "on_reset_password", "erin", "erin-pass-3")
    assert ok and "reactivate it first" in out and app.store.annotator("erin") is None

    root.http.headers["accept-language"] = "zh-CN,zh;q=0.9"          # the messages follow the language
    ok, out = _call(app, root, "on_add_account", "carol", "carol-pass-9", "annotator")
    assert ok and ZH_CN["account_exists"].format(name="carol") in out
    root.close()


def test_account_tools_are_for_admins_only(app: RunningApp) -> None:
    carol = ApiClient(app.url, "carol", PASSWORD)
    for name, data in (("on_add_account", ["mallory", "mallory-pass", "admin"]),
                       ("on_reset_password", ["root", "taken-over-1"])):
        ok, out = _call(app, carol, name, *data)
        assert not ok and "Admins only" in out
    carol.http.headers["accept-language"] = "zh-CN"
    ok, out = _call(app, carol, "on_add_account", "mallory", "mallory-pass", "admin")
    assert not ok and ZH_CN["admins_only"] in out
    assert app.store.annotator("mallory") is None
    assert ApiClient(app.url, "root", PASSWORD).raw("next_item").status_code == 200
    carol.close()
