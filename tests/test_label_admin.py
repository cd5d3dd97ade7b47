"""The admin tab's account tools through the app's real event channel: add an account, reset a password
(the account's open sessions end), refusals in the caller's language, and admins only."""

from __future__ import annotations

from label_app import ApiClient, RunningApp, app_fixture, ui_call
from labeling_ui.i18n import ZH_CN

PASSWORD = "admin-tools-123"


app = app_fixture("label-admin", n_items=4, users={"root": "admin", "carol": "annotator"}, password=PASSWORD)


def test_an_admin_adds_accounts_and_resets_passwords(app: RunningApp) -> None:
    root = ApiClient(app.url, "root", PASSWORD)
    ok, out = ui_call(app, root, "on_add_account", "erin", "erin-pass-1", "annotator")
    assert ok and "Account **erin** added (annotator)" in out
    erin = ApiClient(app.url, "erin", "erin-pass-1")
    assert erin.raw("next_item").status_code == 200
    assert app.store.annotator("erin").role == "annotator"

    ok, out = ui_call(app, root, "on_add_account", "erin", "another-pass", "admin")
    assert ok and "already exists" in out and app.store.annotator("erin").role == "annotator"
    for name, password in (("short", "1234"), ("bad\tname", "long-enough-1"), ("x" * 65, "long-enough-1"),
                           ("", "long-enough-1")):
        ok, out = ui_call(app, root, "on_add_account", name, password, "annotator")
        assert ok and "Not saved" in out, (name, out)
    assert {a.name for a in app.store.annotators()} == {"root", "carol", "erin"}
    ok, out = ui_call(app, root, "on_add_account", "fred", "fred-pass-1", "superuser")
    assert not ok and "not in the list of choices" in out and app.store.annotator("fred") is None

    # a reset: the old password and the sessions opened with it are done; the new one works
    ok, out = ui_call(app, root, "on_reset_password", "erin", "erin-pass-2")
    assert ok and "Password of **erin** reset" in out
    assert erin.raw("next_item").status_code == 401
    assert ApiClient(app.url, "erin", "erin-pass-2").raw("next_item").status_code == 200
    ok, out = ui_call(app, root, "on_reset_password", "nobody", "whatever-123")
    assert ok and "No account is named **nobody**" in out
    ok, out = ui_call(app, root, "on_reset_password", "erin", "short")
    assert ok and "Not saved" in out
    app.store.deactivate_annotator("erin")             # a reset does not let a deactivated account back in
    ok, out = ui_call(app, root, "on_reset_password", "erin", "erin-pass-3")
    assert ok and "reactivate it first" in out and app.store.annotator("erin") is None

    root.http.headers["accept-language"] = "zh-CN,zh;q=0.9"          # the messages follow the language
    ok, out = ui_call(app, root, "on_add_account", "carol", "carol-pass-9", "annotator")
    assert ok and ZH_CN["account_exists"].format(name="carol") in out
    root.close()


def test_account_tools_are_for_admins_only(app: RunningApp) -> None:
    carol = ApiClient(app.url, "carol", PASSWORD)
    for name, data in (("on_add_account", ["mallory", "mallory-pass", "admin"]),
                       ("on_reset_password", ["root", "taken-over-1"])):
        ok, out = ui_call(app, carol, name, *data)
        assert not ok and "Admins only" in out
    carol.http.headers["accept-language"] = "zh-CN"
    ok, out = ui_call(app, carol, "on_add_account", "mallory", "mallory-pass", "admin")
    assert not ok and ZH_CN["admins_only"] in out
    assert app.store.annotator("mallory") is None
    assert ApiClient(app.url, "root", PASSWORD).raw("next_item").status_code == 200
    carol.close()


# ---------------------------------------------------------------------------- campaign views
def _label(label_id: int, item_id: int, annotator: str, choice: str, *, strength: int | None = None,
           flags_a: tuple[str, ...] = (), note: str = "", is_gold: bool = False, created_at: float = 0.0) -> dict:
    return {"id": label_id, "item_id": item_id, "annotator": annotator, "choice": choice, "strength": strength,
            "flags_a": list(flags_a), "flags_b": [], "note": note, "is_gold": is_gold, "created_at": created_at}


def _item(item_id: int, n_labels: int, *, is_gold: bool = False, prompt: str = "p") -> dict:
    return {"id": item_id, "ext_id": f"x{item_id}", "prompt": prompt, "response_a": "a", "response_b": "b",
            "is_gold": is_gold, "n_labels": n_labels}


def test_item_rows_and_filters() -> None:
    from labeling_ui.campaign import filter_items, item_rows

    items = [_item(1, 2), _item(2, 1, prompt="How to bake bread?"), _item(3, 0), _item(4, 3, is_gold=True)]
    labels = [_label(1, 1, "ann", "A", strength=2), _label(2, 1, "bob", "B", strength=1, flags_a=("violence",)),
              _label(3, 2, "ann", "tie", note="Unsure: both fine"),
              _label(4, 4, "ann", "A", strength=3, is_gold=True), _label(5, 4, "bob", "A", strength=1, is_gold=True),
              _label(6, 4, "cid", "A", strength=4, is_gold=True)]
    rows = item_rows(items, labels, overlap=2)
    assert [(r["status"], r["n_labels"], r["agreement"], r["flags"]) for r in rows] == [
        ("complete", 2, 0.5, ["violence"]), ("in_progress", 1, None, []), ("untouched", 0, None, []),
        ("gold", 3, 1.0, [])]

    def ids(**kw) -> list[str]:
        return [r["ext_id"] for r in filter_items(rows, **kw)]

    assert ids() == ["x1", "x2", "x3", "x4"]
    assert ids(status="in_progress") == ["x2"]
    assert ids(agreement="split") == ["x1"] and ids(agreement="unanimous") == ["x4"]
    assert ids(flags="flagged") == ["x1"] and ids(flags="unflagged") == ["x2", "x3", "x4"]
    assert ids(search="BREAD") == ["x2"] and ids(search="both fine") == ["x2"] and ids(search="bob") == ["x1", "x4"]
    assert ids(search="x3") == ["x3"] and ids(search="bread", status="complete") == []


def test_agreement_with_the_others_majority_and_labels_per_day() -> None:
    from labeling_ui.campaign import annotator_quality

    day = 86400.0
    now = 10 * day + 43200
    labels = [_label(1, 1, "ann", "A", strength=2, created_at=now), _label(2, 1, "bob", "A", strength=1, created_at=now),
              _label(3, 1, "cid", "B", strength=1, created_at=now - day),
              _label(4, 2, "ann", "tie", created_at=now - 3 * day), _label(5, 2, "bob", "both_bad", created_at=now),
              _label(6, 9, "ann", "A", strength=1, is_gold=True, created_at=now - 30 * day)]
    q = annotator_quality(labels, days=3, now=now)
    # ann on item 1: the others split A / B: no majority; on item 2 bob alone says both_bad: she disagrees
    assert (q["ann"]["compared"], q["ann"]["majority_agreement"]) == (1, 0.0)
    # bob agrees with the others' majority nowhere: item 1's others split, item 2's other (ann) said tie
    assert (q["bob"]["compared"], q["bob"]["majority_agreement"]) == (1, 0.0)
    # cid on item 1: the others both said A, she said B
    assert (q["cid"]["compared"], q["cid"]["majority_agreement"]) == (1, 0.0)
    assert list(q["bob"]["per_day"].values()) == [0, 0, 2] and list(q["cid"]["per_day"].values()) == [0, 1, 0]
    assert q["ann"]["labels"] == 3 and sum(q["ann"]["per_day"].values()) == 1     # older ones outside the window


def test_item_browser_through_the_app(app: RunningApp) -> None:
    from labeling_ui.queue import LabelQueue

    app.store.add_items("p", [{"id": "hostile", "prompt": "Say <script>window.x=1</script> [a](http://e.x)",
                               "response_a": "<img src=x onerror=alert(1)>", "response_b": "fine"}], overlap=3)
    q = LabelQueue(app.store, "p")
    for name in ("carol", "root"):                # both label the hostile item, skipping the others
        while not (shown := q.next_item(name)).prompt.startswith("Say <script>"):
            q.skip(name, shown.assignment_id)
        q.submit(name, shown.assignment_id, "tie", note="<b>looks</b> fine")
    root = ApiClient(app.url, "root", PASSWORD)
    ok, out = ui_call(app, root, "on_items", "p", "script", "", "", "")
    assert ok and "hostile" in out and "&lt;script&gt;" in out and "<script>" not in out
    ok, out = ui_call(app, root, "on_items", "p", "", "", "unanimous", "")
    assert ok and "hostile" in out and "Matching items: 1 " in out
    hostile = next(i for i in app.store.items("p") if i["ext_id"] == "hostile")
    ok, out = ui_call(app, root, "on_item", "p", hostile["id"])
    assert ok and "&lt;img src=x onerror=alert(1)&gt;" in out and "&lt;b&gt;looks&lt;/b&gt; fine" in out
    assert "carol" in out and "Tie" in out and "<img" not in out
    ok, out = ui_call(app, root, "on_quality")
    assert ok and "agrees with the others" in out and "carol" in out
    carol = ApiClient(app.url, "carol", PASSWORD)
    for name, data in (("on_items", ["p", "", "", "", ""]), ("on_quality", [])):
        ok, out = ui_call(app, carol, name, *data)
        assert not ok and "Admins only" in out
    ok, out = ui_call(app, carol, "on_item", "p", hostile["id"])        # (Gradio refuses an id it did not list)
    assert not ok and "onerror" not in out
    root.close()
    carol.close()
