"""PostgreSQL as the labeling store: several app servers on one database, `align-label migrate`, bad
input (a database that cannot be reached, a schema newer than the code), and old SQLite databases
upgrading in place through Alembic. The store and queue rules themselves are tested on both engines in
test_label_store.py."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from alignment.data.world import DemoWorld
from label_app import ApiClient, start_app
from labeling_ui.demo import demo_items
from labeling_ui.migrate import fingerprint
from labeling_ui.queue import LabelQueue
from labeling_ui.schema import MIGRATIONS, split_sql
from labeling_ui.store import SCHEMA_VERSION, LabelStore

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "pass-word-1"


def label_some(store: LabelStore, names: list[str], n: int) -> None:
    q = LabelQueue(store, "p", gold_rate=0.5)
    for i in range(n):
        name = names[i % len(names)]
        shown = q.next_item(name)
        q.submit(name, shown.assignment_id, "B", 3, flags_left=["violence"], note=f"n{i} 汉字")
    q.undo(names[0])                               # a withdrawn label and a re-opened lease travel too


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alignment.labeling", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if "ERROR" in line or "Traceback" in line]


# ------------------------------------------------------------------------------------------ migrate
def test_migrate_copies_a_sqlite_campaign_into_postgres(tmp_path: Path, pg_url: str, world: DemoWorld) -> None:
    src_path = tmp_path / "labels.db"
    src = LabelStore(src_path)
    src.add_items("p", demo_items(world, 12, gold_every=4), overlap=2)
    src.add_annotator("ann", PASSWORD)
    src.add_annotator("bob", PASSWORD, "admin")
    src.deactivate_annotator("bob")
    label_some(src, ["ann", "ann"], 5)
    with src.read() as c:
        before = fingerprint(c)
    src.close()

    result = cli("migrate", "--to", pg_url, f"label.db={src_path}", f"run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    target = LabelStore(pg_url)
    with target.read() as c:
        assert fingerprint(c) == before
    assert target.check_invariants() == [] and target.labels("p") and target.annotator("bob") is None
    assert target.check_password("ann", PASSWORD)
    old_ids = target.label_ids()
    q = LabelQueue(target, "p", gold_rate=0.0)              # the campaign goes on where it was
    label_id, _ = q.submit("ann", q.next_item("ann").assignment_id, "tie")
    assert label_id > max(old_ids)                          # ids continue after the copied ones
    assert len(target.labels("p")) == len(old_ids) + 1
    target.close()

    again = cli("migrate", "--to", pg_url, f"label.db={src_path}", f"run.dir={tmp_path}")
    assert again.returncode == 2 and "already holds data" in again.stderr
    assert len(error_lines(again)) == 1


def test_an_unreachable_postgres_url_exits_2_with_one_line_and_changes_nothing(tmp_path: Path,
                                                                               world: DemoWorld) -> None:
    src_path = tmp_path / "labels.db"
    src = LabelStore(src_path)
    src.add_items("p", demo_items(world, 3))
    with src.read() as c:
        before = fingerprint(c)
    src.close()
    nowhere = "postgresql://nobody@127.0.0.1:1/campaign"
    for args in (["stats", f"label.db={nowhere}"], ["migrate", "--to", nowhere, f"label.db={src_path}"]):
        result = cli(*args, f"run.dir={tmp_path}")
        assert result.returncode == 2
        [line] = error_lines(result)
        assert "cannot connect to postgresql://nobody@127.0.0.1:1/campaign" in line
    again = LabelStore(src_path)
    with again.read() as c:
        assert fingerprint(c) == before
    again.close()


def test_a_postgres_database_newer_than_the_code_exits_2_and_is_left_alone(tmp_path: Path, pg_url: str) -> None:
    store = LabelStore(pg_url)
    store.ensure_project("p")
    with store.write() as c:
        c.execute("UPDATE alembic_version SET version_num = '0099'")
    store.close()
    result = cli("stats", f"label.db={pg_url}", f"run.dir={tmp_path}")
    assert result.returncode == 2
    [line] = error_lines(result)
    assert "schema version 0099 is newer than this code" in line
    import psycopg
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0099",)]
        assert conn.execute("SELECT name FROM projects").fetchall() == [("p",)]


# ------------------------------------------------------------------------------------------ old SQLite files
def test_a_database_of_the_hand_written_migrations_upgrades_in_place(tmp_path: Path) -> None:
    """A file at schema version 2 as the old code wrote it (no Alembic) is stamped and upgraded."""
    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                  "applied_at REAL NOT NULL)")
        for version, (description, script) in enumerate(MIGRATIONS, start=1):
            for statement in split_sql(script):
                c.execute(statement)
            c.execute("INSERT INTO schema_version VALUES (?, ?, 0)", (version, description))
        c.execute("PRAGMA user_version = 2")
        c.execute("INSERT INTO projects VALUES (1, 'p', 1, 0)")
        c.execute("INSERT INTO items (id, project_id, ext_id, prompt, response_a, response_b, slots_left, "
                  "created_at) VALUES (1, 1, 'i1', 'q', 'a', 'b', 1, 0)")
    store = LabelStore(path)
    assert store.schema_version() == SCHEMA_VERSION and store.setting("cookie_id")
    with store.read() as c:
        assert [r[0] for r in c.execute("SELECT version FROM schema_version ORDER BY version")] == list(
            range(1, SCHEMA_VERSION + 1))
    store.add_annotator("ann", PASSWORD)
    q = LabelQueue(store, "p", gold_rate=0.0)
    assert q.next_item("ann").item_id == 1
    store.close()
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# ------------------------------------------------------------------------------------------ concurrency
def test_a_submit_sent_twice_at_once_makes_one_label(db: str, world: DemoWorld) -> None:
    store = LabelStore(db)
    store.add_items("p", demo_items(world, 2), overlap=1)
    store.add_annotator("ann", PASSWORD)
    q = LabelQueue(store, "p", gold_rate=0.0)
    shown = q.next_item("ann")
    barrier, ids = threading.Barrier(4), []

    def send() -> None:
        barrier.wait()
        ids.append(q.submit("ann", shown.assignment_id, "A", 4)[0])

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 4 and len(set(ids)) == 1 and len(store.labels("p")) == 1
    assert store.check_invariants("p") == []
    store.close()


# ------------------------------------------------------------------------------------------ two servers
def test_two_app_servers_on_one_database_share_logins_and_revocations(pg_url: str, world: DemoWorld) -> None:
    one = start_app(pg_url, overlap=2)
    two = start_app(pg_url, overlap=2)
    try:
        one.store.add_items("p", demo_items(world, 4), overlap=2)
        for name in ("ann", "bob"):
            one.store.add_annotator(name, PASSWORD)
        ann = ApiClient(one.url, "ann", PASSWORD)                 # logged in on server one ...
        first = ann.call("next_item")
        ann_two = httpx.Client(base_url=two.url, cookies=ann.http.cookies, timeout=30)
        r = ann_two.post("/gradio_api/run/submit_label",               # ... labels on server two
                         json={"data": [first["assignment"], "A", 2, [], [], "", None], "session_hash": "s2"})
        assert r.status_code == 200 and r.json()["data"][0]["ok"]
        assert len(two.store.labels("p")) == 1
        bob = ApiClient(two.url, "bob", PASSWORD)
        assert bob.raw("next_item").status_code == 200
        two.store.deactivate_annotator("ann")                     # revoked on one server: out on both
        assert ann.raw("next_item").status_code == 401
        assert ann_two.post("/gradio_api/run/next_item", json={"data": [], "session_hash": "s2"}).status_code == 401
        assert bob.raw("next_item").status_code == 200
        bob_one = httpx.Client(base_url=one.url, cookies=dict(bob.http.cookies), timeout=30)
        assert bob_one.post("/gradio_api/run/next_item", json={"data": [], "session_hash": "s3"}).status_code == 200
        assert bob.http.get("/logout").status_code < 500               # logging out on two ends it on one too
        assert bob_one.post("/gradio_api/run/next_item", json={"data": [], "session_hash": "s3"}).status_code == 401
        for c in (ann, bob):
            c.close()
        ann_two.close()
        bob_one.close()
    finally:
        one.close()
        two.close()
