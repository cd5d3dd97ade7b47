"""Reviewers' decisions on disagreements and paused annotators (:mod:`labeling_ui.review`): the store
and queue rules on both engines (the ``db`` fixture), a version-3 database upgrading in place, and the
Review tab and pause tools through the app's real event channel."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine

from alignment.errors import UserError
from label_app import ApiClient, RunningApp, app_fixture, ui_call
from labeling_ui.export import aggregate
from labeling_ui.i18n import ZH_CN
from labeling_ui.queue import PAUSED, LabelQueue, QueueError
from labeling_ui.review import (
    ReviewError,
    adjudicate,
    adjudications,
    is_paused,
    pause,
    pause_rule,
    pause_states,
    set_pause_rule,
    unpause,
)
from labeling_ui.store import _MIGRATIONS_DIR, SCHEMA_VERSION, LabelStore, database_url

PASSWORD = "review-pass-1"


@pytest.fixture
def store(db: str) -> LabelStore:
    s = LabelStore(db)
    yield s
    s.close()


def _pairs(prefix: str, n: int, gold: str | None = None) -> list[dict]:
    return [{"id": f"{prefix}{i}", "prompt": f"{prefix} prompt {i}", "response_a": f"{prefix} a{i}",
             "response_b": f"{prefix} b{i}", **({"gold_choice": gold} if gold else {})} for i in range(n)]


def _active_leases(store: LabelStore, name: str) -> int:
    with store.read() as c:
        return c.execute("""SELECT COUNT(*) FROM assignments a JOIN annotators n ON n.id = a.annotator_id
                            WHERE n.name = ? AND a.status = 'active'""", (name,)).fetchone()[0]


def _display(store: LabelStore, assignment_id: int, stored: str) -> str:
    """The display choice (A = shown first) that means ``stored`` on this assignment."""
    with store.read() as c:
        shown_first = c.execute("SELECT shown_first FROM assignments WHERE id = ?", (assignment_id,)).fetchone()[0]
    return stored if shown_first == "A" else {"A": "B", "B": "A"}[stored]


def _slots(store: LabelStore, project: str) -> dict[str, int]:
    return {it["ext_id"]: it["slots_left"] for it in store.items(project)}


# ------------------------------------------------------------------------------------------ schema
def test_a_version_3_database_upgrades_in_place(db: str) -> None:
    """Revision 0004 rebuilds SQLite's annotators (the role's CHECK) under tables that point at it, and
    replaces the constraint on PostgreSQL; every row stays, and the new role is accepted."""
    from alembic import command
    from alembic.config import Config

    engine = create_engine(database_url(db)[0])
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
        for sql in ("INSERT INTO projects (id, name, overlap, created_at) VALUES (1, 'p', 2, 0)",
                    "INSERT INTO items (id, project_id, ext_id, prompt, response_a, response_b, slots_left, created_at) "
                    "VALUES (1, 1, 'i1', 'q', 'a', 'b', 1, 0)",
                    "INSERT INTO annotators (id, name, role, pw_hash, created_at, session_epoch) "
                    "VALUES (7, 'old', 'admin', 'x', 0, 3)",
                    "INSERT INTO assignments (id, item_id, annotator_id, shown_first, status, leased_at, expires_at) "
                    "VALUES (1, 1, 7, 'A', 'labeled', 0, 1)",
                    "INSERT INTO labels (item_id, annotator_id, assignment_id, choice, shown_first, strength, created_at) "
                    "VALUES (1, 7, 1, 'A', 'A', 2, 0)",
                    "INSERT INTO sessions (token_hash, annotator_id, epoch, created_at) VALUES ('h', 7, 3, 0)"):
            conn.exec_driver_sql(sql)
    engine.dispose()

    store = LabelStore(db)
    assert store.schema_version() == SCHEMA_VERSION == 4
    old = store.annotator("old")
    assert (old.id, old.role, old.paused) == (7, "admin", False)
    assert store.session_epoch("old") == 3
    [label] = store.labels("p")
    assert (label["annotator"], label["choice"], label["strength"]) == ("old", "A", 2)
    assert store.add_annotator("rita", PASSWORD, "reviewer").is_reviewer
    with store.write() as c:
        if not c.postgres:
            assert c.execute("PRAGMA foreign_key_check").fetchall() == []
        c.execute("DELETE FROM sessions")
    with pytest.raises(Exception, match="(?i)check|constraint"):
        with store.write() as c:
            c.execute("UPDATE annotators SET role = 'owner' WHERE name = 'rita'")
    store.close()


# ------------------------------------------------------------------------------------------ adjudication
def test_a_decision_is_stored_supersedes_and_replaces_the_vote_in_the_export(store: LabelStore) -> None:
    store.add_items("p", _pairs("r", 3), overlap=2)
    for name, role in (("ann", "annotator"), ("bob", "annotator"), ("rita", "reviewer")):
        store.add_annotator(name, PASSWORD, role)
    q = LabelQueue(store, "p", gold_rate=0.0)
    for name, stored in (("ann", "A"), ("bob", "B")):        # one says A, the other B (stored order)
        shown = q.next_item(name)
        q.submit(name, shown.assignment_id, _display(store, shown.assignment_id, stored), 2, flags_left=["hate"],
                 note=f"{name} says")
    rows, summary = aggregate(store, "p")
    assert rows == [] and summary["dropped"] == {"no_majority": 1}
    item = store.items("p")[0]
    assert {lab["item_id"] for lab in store.labels("p")} == {item["id"]}

    rita, ann = store.annotator("rita"), store.annotator("ann")
    with pytest.raises(ReviewError, match="only reviewers"):
        adjudicate(store, item["id"], ann, "A", 4)
    with pytest.raises(ReviewError, match="strength must be 1-4"):
        adjudicate(store, item["id"], rita, "B")
    with pytest.raises(ReviewError, match="unknown safety category"):
        adjudicate(store, item["id"], rita, "B", 3, flags_a=["nonsense"])
    with pytest.raises(ReviewError, match="no such item"):
        adjudicate(store, 99_999, rita, "tie")
    first = adjudicate(store, item["id"], rita, "B", 3, flags_a=["violence"], note="B answers the question")
    [decision] = adjudications(store, "p")
    assert (decision["id"], decision["reviewer"], decision["choice"], decision["strength"]) == (first, "rita", "B", 3)
    assert decision["flags_a"] == ["violence"] and decision["created_at"] > 0 and decision["superseded_at"] is None

    [row], summary = aggregate(store, "p")
    assert row["adjudicated"] and summary["adjudicated"] == 1
    assert row["chosen"] == item["response_b"] and row["rejected"] == item["response_a"]
    assert row["margin"] == pytest.approx(2 / 3)                     # the decision's strength 3
    assert row["rejected_flags"] == ["violence"] and row["chosen_flags"] == []   # the reviewer's flags
    assert row["agreement"] == 0.5 and row["n_labels"] == 2
    assert row["notes"][-1] == "B answers the question" and len(row["notes"]) == 3

    second = adjudicate(store, item["id"], store.annotator("rita"), "tie", note="on reflection, equal")
    assert second > first
    history = adjudications(store, "p", history=True)
    assert [d["id"] for d in history] == [first, second] and history[0]["superseded_at"] is not None
    rows, summary = aggregate(store, "p")
    assert rows == [] and summary["dropped"]["tie"] == 1
    [row], _ = aggregate(store, "p", keep_ties=True)
    assert row["label"] == "tie" and row["adjudicated"] and row["margin"] == 0.0


def test_a_decision_exports_an_item_below_min_labels(store: LabelStore) -> None:
    store.add_items("p", _pairs("r", 1), overlap=3)
    store.add_annotator("ann", PASSWORD)
    store.add_annotator("boss", PASSWORD, "admin")
    q = LabelQueue(store, "p", gold_rate=0.0)
    q.submit("ann", q.next_item("ann").assignment_id, "tie")
    assert aggregate(store, "p")[0] == []
    adjudicate(store, store.items("p")[0]["id"], store.annotator("boss"), "A", 4)
    [row], _ = aggregate(store, "p")
    assert row["adjudicated"] and row["margin"] == 1.0 and row["agreement"] == 0.0


# ------------------------------------------------------------------------------------------ pausing
def test_gold_accuracy_below_the_threshold_pauses_and_returns_leases(store: LabelStore) -> None:
    store.add_items("p", _pairs("g", 4, gold="A") + _pairs("r", 3), overlap=1)
    store.add_items("q", _pairs("s", 1), overlap=1)
    store.add_annotator("ann", PASSWORD)
    store.add_annotator("bob", PASSWORD)
    assert pause_rule(store) is None
    with pytest.raises(UserError, match="threshold must be in"):
        set_pause_rule(store, 1.5)
    with pytest.raises(UserError, match="minimum number of gold labels"):
        set_pause_rule(store, 0.5, 0)
    assert set_pause_rule(store, 0.75, 2).min_gold == 2
    p, other = LabelQueue(store, "p", gold_rate=1.0), LabelQueue(store, "q", gold_rate=0.0)
    held = other.next_item("ann")                    # an open lease in another project of the campaign
    assert _slots(store, "q") == {"s0": 0}

    shown = p.next_item("ann")
    _, shown = p.submit("ann", shown.assignment_id, "tie")          # wrong (gold is A): 0 of 1, under min_gold
    assert shown is not None and not is_paused(store, "ann")
    _, after = p.submit("ann", shown.assignment_id, "tie")          # 0 of 2: paused by this label
    assert after is None and is_paused(store, "ann") and store.annotator("ann").paused
    state = pause_states(store)["ann"]
    assert state["reason"] == "gold" and (state["gold_counted"], state["gold_accuracy"]) == (2, 0.0)
    assert len([lab for lab in store.labels("p") if lab["annotator"] == "ann"]) == 2   # the label itself counts
    assert _active_leases(store, "ann") == 0 and _slots(store, "q") == {"s0": 1}        # returned at once
    assert store.check_invariants() == []
    assert other.next_item("bob").item_id == held.item_id            # someone else gets it

    assert p.next_item("ann") is None and other.next_item("ann") is None
    with pytest.raises(QueueError, match=PAUSED):
        other.submit("ann", held.assignment_id, "A", 2)
    assert p.undo("ann") is None                                     # undo would re-open a lease
    assert len(store.labels("p")) == 2

    assert unpause(store, "ann") and not unpause(store, "ann")
    assert pause_states(store)["ann"]["gold_counted"] == 0           # counted afresh after the un-pause
    shown = p.next_item("ann")
    _, shown = p.submit("ann", shown.assignment_id, "tie")          # 0 of 1 since: under min_gold again
    assert shown is not None and not is_paused(store, "ann")

    set_pause_rule(store, None)
    assert pause_rule(store) is None
    _, shown = p.submit("ann", shown.assignment_id, "tie")
    assert not is_paused(store, "ann")


def test_an_admin_pauses_and_unpauses(store: LabelStore) -> None:
    store.add_items("p", _pairs("r", 3), overlap=2)
    store.add_annotator("ann", PASSWORD)
    q = LabelQueue(store, "p", gold_rate=0.0)
    shown = q.next_item("ann")
    assert _slots(store, "p")["r0"] == 1
    assert pause(store, "ann") == 1 and pause(store, "ann") == 0
    assert pause_states(store)["ann"]["reason"] == "admin"
    assert _slots(store, "p")["r0"] == 2 and _active_leases(store, "ann") == 0
    assert store.check_invariants() == []
    with pytest.raises(QueueError, match=PAUSED):
        q.submit("ann", shown.assignment_id, "A", 3)
    assert store.labels("p") == [] and q.next_item("ann") is None
    with pytest.raises(UserError, match="no annotator named"):
        pause(store, "nobody")
    assert unpause(store, "ann")
    assert q.next_item("ann").item_id != shown.item_id      # the returned item is never shown to them again
    assert store.check_invariants() == []


def test_a_pause_holds_against_concurrent_requests(db: str) -> None:
    """Threads of one annotator asking for items while an admin pauses them: afterwards they hold no
    lease, get nothing, and every slot is accounted for."""
    store = LabelStore(db)
    store.add_items("p", _pairs("r", 40), overlap=2)
    store.add_annotator("ann", PASSWORD)
    q = LabelQueue(store, "p", gold_rate=0.0)
    errors: list[BaseException] = []
    go = threading.Event()

    def work() -> None:
        go.wait()
        try:
            for _ in range(15):
                shown = q.next_item("ann")
                if shown is None:
                    return
                try:
                    q.skip("ann", shown.assignment_id)
                except QueueError:
                    pass
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    go.set()
    pause(store, "ann")
    for th in threads:
        th.join()
    assert errors == []
    assert _active_leases(store, "ann") == 0 and q.next_item("ann") is None
    assert store.check_invariants() == []
    store.close()


# ------------------------------------------------------------------------------------------ through the app
app = app_fixture("label-review", n_items=4, overlap=2, password=PASSWORD,
                  users={"root": "admin", "rita": "reviewer", "ann": "annotator", "bob": "annotator"})


def test_a_reviewer_adjudicates_through_the_app(app: RunningApp) -> None:
    ann, bob, rita = (ApiClient(app.url, n, PASSWORD) for n in ("ann", "bob", "rita"))
    for client, stored in ((ann, "A"), (bob, "B")):
        item = client.call("next_item")
        choice = _display(app.store, item["assignment"], stored)
        assert client.call("submit_label", item["assignment"], choice, 2, [], [], "", None)["ok"]
    labels = app.store.labels("p")
    assert sorted(lab["choice"] for lab in labels) == ["A", "B"] and len({lab["item_id"] for lab in labels}) == 1
    item_id = labels[0]["item_id"]

    ok, out = ui_call(app, rita, "on_list", "p", "", "open")
    assert ok and "Items with disagreeing labels: 1" in out
    ok, out = ui_call(app, rita, "on_pick", "p", item_id)
    assert ok and "No decision yet" in out and "ann" in out and "bob" in out
    ok, out = ui_call(app, rita, "on_save", "p", item_id, None, [], [], "")
    assert ok and "Pick a decision first" in out
    ok, out = ui_call(app, rita, "on_save", "p", item_id, "B_4", [], ["violence"], "clear <b>win</b>")
    assert ok and "saved: B much better" in out and "&lt;b&gt;win" in out
    [d] = adjudications(app.store, "p")
    assert (d["reviewer"], d["choice"], d["strength"], d["flags_b"]) == ("rita", "B", 4, ["violence"])
    ok, out = ui_call(app, rita, "on_list", "p", "", "decided")
    assert ok and "Items with disagreeing labels: 1" in out and "B much better" in out
    ok, out = ui_call(app, rita, "on_list", "p", "", "open")
    assert ok and "No item with disagreeing labels" in out
    rita.http.headers["accept-language"] = "zh-CN"
    ok, out = ui_call(app, rita, "on_list", "p", "", "decided")
    assert ok and "标注有分歧的条目共 1 条" in out and ZH_CN["choice_B_4"] in out

    for client in (ann, bob):          # annotators cannot list or adjudicate, whatever they send
        for name, data in (("on_list", ["p", "", ""]), ("on_pick", ["p", None]),
                           ("on_save", ["p", None, "A_4", [], [], ""])):
            ok, out = ui_call(app, client, name, *data)
            assert not ok and "Reviewers and admins only" in out, name
        ok, out = ui_call(app, client, "on_save", "p", item_id, "A_4", [], [], "")   # (an id Gradio did not list)
        assert not ok
    assert len(adjudications(app.store, "p", history=True)) == 1
    [row], _ = aggregate(app.store, "p", min_labels=1)
    assert row["adjudicated"] and row["margin"] == 1.0
    for client in (ann, bob, rita):
        client.close()


def test_an_admin_pauses_through_the_app_and_the_annotator_is_told(app: RunningApp) -> None:
    root, ann = ApiClient(app.url, "root", PASSWORD), ApiClient(app.url, "ann", PASSWORD)
    held = ann.call("next_item")
    assert held["assignment"] is not None
    ok, out = ui_call(app, ann, "on_pause", "bob")
    assert not ok and "Admins only" in out
    ok, out = ui_call(app, root, "on_pause", "ann")
    assert ok and "Account **ann** paused; 1 open item(s) went back" in out and "paused by an admin" in out
    assert ann.call("next_item") == {"assignment": None, "done": False, "paused": True}
    refused = ann.call("submit_label", held["assignment"], "A", 2, [], [], "", None)
    assert refused["ok"] is False and refused["error"] == PAUSED and refused["next"]["paused"]
    ok, out = ui_call(app, ann, "on_load")
    assert ok and "Your account is paused" in out
    ann.http.headers["accept-language"] = "zh-CN"
    ok, out = ui_call(app, ann, "on_load")
    assert ok and ZH_CN["paused"] in out

    ok, out = ui_call(app, root, "on_rule", 0.8, 3)
    assert ok and "gold accuracy below **0.80** after at least **3** gold items" in out
    assert pause_rule(app.store).threshold == 0.8
    ok, out = ui_call(app, root, "on_rule", 1.5, 3)                 # out of the field's bounds: refused
    assert not ok and pause_rule(app.store).threshold == 0.8
    ok, out = ui_call(app, root, "on_rule", None, 3)
    assert ok and "Pause rule: off" in out and pause_rule(app.store) is None

    ok, out = ui_call(app, root, "on_unpause", "ann")
    assert ok and "Account **ann** may label again" in out
    assert ann.call("next_item")["assignment"] is not None
    ok, out = ui_call(app, root, "on_unpause", "ann")
    assert ok and "is not paused" in out
    root.close()
    ann.close()


def test_migrate_copies_decisions_pauses_and_the_rule(tmp_path, pg_url: str) -> None:
    from labeling_ui.migrate import copy_campaign

    src = LabelStore(tmp_path / "labels.db")
    src.add_items("p", _pairs("r", 2), overlap=2)
    src.add_annotator("ann", PASSWORD)
    src.add_annotator("rita", PASSWORD, "reviewer")
    item_id = src.items("p")[0]["id"]
    adjudicate(src, item_id, src.annotator("rita"), "A", 2, note="first")
    adjudicate(src, item_id, src.annotator("rita"), "B", 1, flags_b=["hate"], note="second")
    set_pause_rule(src, 0.6, 4)
    pause(src, "ann")
    dst = LabelStore(pg_url)
    got = copy_campaign(src, dst)
    assert got["tables"]["adjudications"]["rows"] == 2
    assert adjudications(dst, "p", history=True) == adjudications(src, "p", history=True)
    assert pause_rule(dst) == pause_rule(src) and is_paused(dst, "ann") and dst.annotator("rita").is_reviewer
    src.close()
    dst.close()
