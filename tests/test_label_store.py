"""The labeling store and queue: schema, invariants under concurrency, leases, import errors, export.

The store and queue tests run on both engines (the ``db`` fixture: a SQLite file, a PostgreSQL database)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from alignment.data.world import DemoWorld
from alignment.errors import UserError
from labeling_ui.agreement import project_stats
from labeling_ui.demo import demo_items
from labeling_ui.export import aggregate, export_preferences
from labeling_ui.importer import hh_to_pair, import_file, read_jsonl
from labeling_ui.queue import LabelQueue, QueueError, to_stored
from labeling_ui.store import SCHEMA_VERSION, LabelStore

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def add_users(store: LabelStore, n: int, prefix: str = "ann") -> list[str]:
    names = [f"{prefix}{i}" for i in range(n)]
    for name in names:
        store.add_annotator(name, "password-123")
    return names


def count_rows(db: LabelStore | str | Path) -> dict[str, int]:
    store = db if isinstance(db, LabelStore) else LabelStore(db)
    with store.read() as c:
        return {t: c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("projects", "items", "annotators", "assignments", "labels")}


@pytest.fixture
def store(db: str) -> LabelStore:
    """An empty label store, on each engine in turn."""
    s = LabelStore(db)
    yield s
    s.close()


# ------------------------------------------------------------------------------------------ schema
def test_schema_is_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    s = LabelStore(path)
    assert s.schema_version() == SCHEMA_VERSION
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("SELECT version FROM schema_version").fetchall() == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
    s.close()
    LabelStore(path).close()            # re-opening applies nothing twice
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(UserError, match="newer than this code"):
        LabelStore(path)


def test_passwords_are_salted_hashes_and_checked(store: LabelStore) -> None:
    store.add_annotator("alice", "correct-horse", "admin")
    store.add_annotator("bob", "correct-horse")
    with store.read() as c:
        hashes = [r[0] for r in c.execute("SELECT pw_hash FROM annotators ORDER BY id")]
    assert all(h.startswith("scrypt$") and "correct-horse" not in h for h in hashes)
    assert hashes[0] != hashes[1]                       # salted
    assert store.check_password("alice", "correct-horse")
    assert store.check_password("alice", "correct-horse")   # cached path
    assert not store.check_password("alice", "wrong-horse")
    assert not store.check_password("nobody", "correct-horse")
    store.add_annotator("alice", "new-password", "admin", update=True)
    assert not store.check_password("alice", "correct-horse")   # a reset invalidates the cache
    assert store.check_password("alice", "new-password")
    with pytest.raises(UserError, match="already exists"):
        store.add_annotator("bob", "whatever-123")
    with pytest.raises(UserError, match="role"):
        store.add_annotator("carol", "whatever-123", "root")
    store.deactivate_annotator("bob")
    assert store.annotator("bob") is None and not store.check_password("bob", "correct-horse")


# ------------------------------------------------------------------------------------------ add_items / import
def test_add_items_validates_everything_before_writing(store: LabelStore, world: DemoWorld) -> None:
    good = demo_items(world, 3)
    store.add_items("p", good)
    before = count_rows(store)
    bad_batches = [
        ([*demo_items(world, 2, prefix="x"), {"prompt": "hi", "response_a": "a"}], "missing key 'response_b'"),
        ([*demo_items(world, 2, prefix="y"), {"prompt": "hi", "response_a": "a", "response_b": "  "}], "is empty"),
        ([{"id": "z", "prompt": "p", "response_a": "a", "response_b": "b"}] * 2, "duplicate id 'z'"),
        ([{"id": "demo-1", "prompt": "p", "response_a": "a", "response_b": "b"}], "already has it"),
        ([{"prompt": "p", "response_a": "a", "response_b": "b", "safety_a": {"hate": "high"}}], "safety_a"),
        ([{"prompt": "p", "response_a": "a", "response_b": "b", "gold": "C"}], "gold answer"),
    ]
    for batch, message in bad_batches:
        with pytest.raises(UserError, match=message):
            store.add_items("p", batch, source="candidates")
        assert count_rows(store) == before


def test_add_items_is_rerunnable_with_skip_existing(store: LabelStore, world: DemoWorld) -> None:
    first = store.add_items("p", demo_items(world, 3), overlap=2)
    again = store.add_items("p", demo_items(world, 5), skip_existing=True)
    assert len(first) == 3 and len(again) == 2 and len(store.items("p")) == 5
    assert store.project("p").overlap == 2
    with pytest.raises(UserError):
        store.add_items("fresh", [{"prompt": "p", "response_a": "a", "response_b": ""}])
    assert store.get_project("fresh") is None         # a failed add creates no project either


def test_add_items_stores_sources_and_safety_scores(store: LabelStore) -> None:
    [item_id] = store.add_items("p", [{"prompt": "q", "response_a": "a", "response_b": "b",
                                       "sources": ["policy-v0", "policy-v1"],
                                       "safety_a": {"violence": 0.9}, "safety_b": {"violence": 0.1}}])
    item = store.item(item_id)
    assert (item["source_a"], item["source_b"]) == ("policy-v0", "policy-v1")
    assert item["safety_a"] == {"violence": 0.9} and item["ext_id"].startswith("sha256:")


@pytest.mark.parametrize("lines, message", [
    (['{"prompt": "p", "response_a": "a", "response_b": "b"}', '{"prompt": "p2", "response_a": "a"'], ":2: not valid JSON"),
    (['{"prompt": "p", "response_a": "a", "response_b": "b"}', '{"prompt": "p2", "response_a": "a"}'],
     ":2: missing key 'response_b'"),
    (['{"prompt": "p", "response_a": "a", "response_b": ""}'], ":1: key 'response_b' is empty"),
    (['{"id": 1, "prompt": "p", "response_a": "a", "response_b": "b"}', "",
      '{"id": 1, "prompt": "q", "response_a": "a", "response_b": "b"}'], ":3: duplicate id '1'"),
    (['{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: yes", "rejected": "\\n\\nHuman: ho\\n\\nAssistant: no"}'],
     ":1: HH-RLHF record: the chosen and rejected transcripts differ before their last Assistant turn"),
    (['{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: ", "rejected": "\\n\\nHuman: hi\\n\\nAssistant: no"}'],
     ":1: HH-RLHF record: the chosen transcript's last Assistant turn is empty"),
    (['[1, 2]'], ":1: expected a JSON object"),
])
def test_malformed_import_names_file_and_line_and_changes_nothing(store: LabelStore, tmp_path: Path,
                                                                  lines: list[str], message: str) -> None:
    store.add_items("p", [{"prompt": "seed", "response_a": "a", "response_b": "b"}])
    before = count_rows(store)
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as err:
        import_file(store, "p", path)
    assert str(path) + message in str(err.value)
    assert count_rows(store) == before


def test_hh_transcripts_split_into_prompt_and_last_turns() -> None:
    chosen = "\n\nHuman: How do I pick a lock?\n\nAssistant: Why?\n\nHuman: I'm locked out.\n\nAssistant: Call a locksmith."
    rejected = "\n\nHuman: How do I pick a lock?\n\nAssistant: Why?\n\nHuman: I'm locked out.\n\nAssistant: Use a pin."
    pair = hh_to_pair({"chosen": chosen, "rejected": rejected})
    assert pair["prompt"] == "Human: How do I pick a lock?\n\nAssistant: Why?\n\nHuman: I'm locked out.\n\nAssistant:"
    assert (pair["response_a"], pair["response_b"]) == ("Call a locksmith.", "Use a pin.")


def test_real_hh_file_imports_with_skip_invalid(store: LabelStore) -> None:
    from conftest import shared_data
    path = shared_data("hh-rlhf-harmless/harmless-base-test.dev.jsonl")
    with pytest.raises(UserError, match=r"\.jsonl:\d+: HH-RLHF record"):
        import_file(store, "hh", path)          # the real split has a few empty last turns: strict fails
    assert count_rows(store)["items"] == 0
    skipped: list[str] = []
    n = import_file(store, "hh", path, skip_invalid=True, skipped=skipped)
    assert n + len(skipped) == sum(1 for line in path.open() if line.strip())
    assert 0 < len(skipped) < 20
    item = store.items("hh")[0]
    assert item["prompt"].startswith("Human:") and "\n\nAssistant:" not in item["response_a"]


def test_read_jsonl_accepts_mixed_formats(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps({"id": "x", "prompt": "p", "response_a": "a", "response_b": "b",
                                "sources": ["m1", "m2"]}) + "\n"
                    + json.dumps({"chosen": "\n\nHuman: q\n\nAssistant: good", "rejected": "\n\nHuman: q\n\nAssistant: bad"})
                    + "\n")
    items, lines = read_jsonl(path)
    assert lines == [1, 2] and items[1]["response_a"] == "good"


# ------------------------------------------------------------------------------------------ queue rules
def test_overlap_distinct_annotators_and_never_twice(store: LabelStore, world: DemoWorld) -> None:
    store.add_items("p", demo_items(world, 10), overlap=3)
    names = add_users(store, 5)
    q = LabelQueue(store, "p", gold_rate=0.0)
    seen: dict[str, list[int]] = {n: [] for n in names}
    for _ in range(40):
        for name in names:
            shown = q.next_item(name)
            if shown is None:
                continue
            seen[name].append(shown.item_id)
            q.submit(name, shown.assignment_id, "tie")
    for name, ids in seen.items():
        assert len(ids) == len(set(ids)), f"{name} saw an item twice"
    labels = store.labels("p")
    per_item = Counter(lab["item_id"] for lab in labels)
    assert set(per_item.values()) == {3} and len(per_item) == 10
    assert store.check_invariants("p") == []
    assert all(q.next_item(n) is None for n in names)


def test_ab_order_is_shuffled_stored_and_mapped_back(store: LabelStore, world: DemoWorld) -> None:
    store.add_items("p", demo_items(world, 40), overlap=1)
    [name] = add_users(store, 1)
    q = LabelQueue(store, "p", gold_rate=0.0, seed=3)
    firsts = Counter()
    while (shown := q.next_item(name)) is not None:
        item = store.item(shown.item_id)
        first = "A" if shown.response_left == item["response_a"] else "B"
        firsts[first] += 1
        q.submit(name, shown.assignment_id, "A", 2, flags_left=["hate"])     # always the left one
    assert firsts["A"] > 5 and firsts["B"] > 5
    for lab in store.labels("p"):
        assert lab["choice"] == lab["shown_first"]          # "left" mapped back to the stored side
        assert (lab["flags_a"] if lab["shown_first"] == "A" else lab["flags_b"]) == ["hate"]
    assert to_stored("A", "B") == "B" and to_stored("tie", "B") == "tie"


def test_gold_items_are_mixed_in_and_scored(store: LabelStore, world: DemoWorld) -> None:
    items = demo_items(world, 200, gold_every=10)
    store.add_items("p", items, overlap=1)
    [name] = add_users(store, 1)
    q = LabelQueue(store, "p", gold_rate=0.2, seed=1)
    served = []
    for _ in range(50):
        shown = q.next_item(name)
        served.append(store.item(shown.item_id)["is_gold"])
        q.submit(name, shown.assignment_id, "A", 1)
    assert 4 <= sum(served) <= 18             # about 20% of 50
    stats = project_stats(store, "p")
    assert stats["per_annotator"][name]["gold_labels"] == sum(served)
    assert stats["per_annotator"][name]["gold_accuracy"] is not None


def test_strength_and_choice_are_validated(store: LabelStore, world: DemoWorld) -> None:
    store.add_items("p", demo_items(world, 2))
    [name] = add_users(store, 1)
    q = LabelQueue(store, "p", gold_rate=0.0)
    shown = q.next_item(name)
    for kwargs, message in ((dict(choice="A"), "strength"), (dict(choice="A", strength=7), "1-4"),
                            (dict(choice="maybe"), "choice"), (dict(choice="tie", flags_left=["nope"]), "category")):
        with pytest.raises(QueueError, match=message):
            q.submit(name, shown.assignment_id, **kwargs)
    assert store.labels("p") == []


def test_skip_and_undo(store: LabelStore, world: DemoWorld) -> None:
    store.add_items("p", demo_items(world, 3), overlap=1)
    alice, bob = add_users(store, 2)
    q = LabelQueue(store, "p", gold_rate=0.0)
    first = q.next_item(alice)
    second = q.skip(alice, first.assignment_id)
    assert second.item_id != first.item_id
    assert q.next_item(bob).item_id == first.item_id          # the skipped item went back to the pool
    label_id, third = q.submit(alice, second.assignment_id, "B", 4)
    again = q.undo(alice)
    assert again.assignment_id == second.assignment_id and again.response_left == second.response_left
    assert store.labels("p") == [] and store.check_invariants("p") == []
    label_id2, nxt = q.submit(alice, again.assignment_id, "A", 1)
    assert nxt.assignment_id == third.assignment_id            # back to the item that was current
    assert [lab["choice"] for lab in store.labels("p")] == [to_stored("A", _shown_first(store, again))]
    with pytest.raises(QueueError, match="no such assignment"):
        q.submit(bob, third.assignment_id, "tie")              # not bob's
    with pytest.raises(QueueError, match="no such assignment"):
        q.skip(bob, third.assignment_id)
    assert q.undo(bob).item_id == first.item_id                # nothing of bob's to undo: his current item
    assert len(store.labels("p")) == 1                         # alice's label untouched


def test_count_pending_agrees_with_project_stats(store: LabelStore, world: DemoWorld) -> None:
    store.add_items("p", demo_items(world, 12, gold_every=4), overlap=2)
    alice, bob, carol = add_users(store, 3)
    q = LabelQueue(store, "p", gold_rate=0.0)
    gold_q = LabelQueue(store, "p", gold_rate=1.0)        # serves gold items first

    def pending() -> int:
        items = project_stats(store, "p")["items"]
        assert store.count_pending("p") == items["total"] - items["complete"]
        return store.count_pending("p")

    regular = [it["id"] for it in store.items("p") if not it["is_gold"]]
    assert len(regular) == 9 and pending() == 9
    for name, n in ((alice, 6), (bob, 3)):              # items are served in id order
        for _ in range(n):
            shown = q.next_item(name)
            q.submit(name, shown.assignment_id, "A", 2)
    for _ in range(2):                                  # labels on gold items change nothing
        shown = gold_q.next_item(carol)
        assert store.item(shown.item_id)["is_gold"]
        gold_q.submit(carol, shown.assignment_id, "B", 1)
    for _ in range(2):                                  # skips (a gold item, then a regular one)
        shown = q.next_item(carol)                      # (submit and skip lease the next item)
        assert q.skip(carol, shown.assignment_id) is not None
    n_labels = Counter(it["n_labels"] for it in store.items("p") if not it["is_gold"])
    assert n_labels == {2: 3, 1: 3, 0: 3}               # fully, partially and not labeled
    assert pending() == 6
    store.set_overlap("p", 1)
    assert pending() == 3
    store.set_overlap("p", 3)
    assert pending() == 9
    store.set_overlap("p", 2)
    while True:
        shown = [(name, s) for name in (alice, bob, carol) if (s := q.next_item(name)) is not None]
        if not shown:
            break
        for name, s in shown:
            q.submit(name, s.assignment_id, "tie")
    assert pending() == 0 and store.check_invariants("p") == []


def _shown_first(store: LabelStore, shown) -> str:
    return "A" if shown.response_left == store.item(shown.item_id)["response_a"] else "B"


def test_resubmitting_a_label_is_idempotent(store: LabelStore, world: DemoWorld) -> None:
    store.add_items("p", demo_items(world, 3))
    [name] = add_users(store, 1)
    q = LabelQueue(store, "p", gold_rate=0.0)
    shown = q.next_item(name)
    first_id, _ = q.submit(name, shown.assignment_id, "A", 3)
    again_id, _ = q.submit(name, shown.assignment_id, "A", 3)
    assert first_id == again_id and len(store.labels("p")) == 1


def test_leases_expire_and_return_to_the_pool(store: LabelStore, world: DemoWorld) -> None:
    clock = Clock()
    store.add_items("p", demo_items(world, 1), overlap=1)
    alice, bob, carol = add_users(store, 3)
    q = LabelQueue(store, "p", gold_rate=0.0, lease_seconds=60, clock=clock)
    a = q.next_item(alice)
    assert q.next_item(bob) is None                      # the only slot is leased
    clock.t += 30
    assert q.next_item(alice).assignment_id == a.assignment_id     # a reload renews the lease
    clock.t += 61
    b = q.next_item(bob)                                 # expired: back in the pool
    assert b is not None and b.item_id == a.item_id
    with pytest.raises(QueueError, match="expired"):
        q.submit(alice, a.assignment_id, "tie")          # too late, and the item is full again
    assert q.next_item(alice) is None                    # alice never gets it twice
    clock.t += 61                                        # bob's lease runs out too, nobody took the slot
    label_id, _ = q.submit(bob, b.assignment_id, "tie")  # a late label is fine while a slot is free
    assert label_id and q.next_item(carol) is None
    assert store.check_invariants("p") == []


# ------------------------------------------------------------------------------------------ concurrency
def test_threads_never_over_assign(db: str, world: DemoWorld) -> None:
    store = LabelStore(db)
    store.add_items("p", demo_items(world, 30, gold_every=10), overlap=3)
    names = add_users(store, 8)
    q = LabelQueue(store, "p", gold_rate=0.1, lease_seconds=0.05)   # short leases: expiry races too
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            for i in range(60):
                shown = q.next_item(name)
                if shown is None:
                    return
                if i % 7 == 3:
                    q.skip(name, shown.assignment_id)
                    continue
                try:
                    q.submit(name, shown.assignment_id, "A" if i % 2 else "tie", 2)
                except QueueError as e:
                    assert "expired" in str(e)
        except BaseException as e:   # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.check_invariants("p") == []
    per_item = Counter(lab["item_id"] for lab in store.labels("p") if not lab["is_gold"])
    assert per_item and max(per_item.values()) <= 3
    store.close()


WORKER = textwrap.dedent("""
    import sys
    from labeling_ui.queue import LabelQueue, QueueError
    from labeling_ui.store import LabelStore
    import threading
    db, names = sys.argv[1], sys.argv[2:]
    store = LabelStore(db)
    q = LabelQueue(store, "p", gold_rate=0.0, lease_seconds=30)
    def work(name):
        while (shown := q.next_item(name)) is not None:
            q.submit(name, shown.assignment_id, "B", 1)
    ts = [threading.Thread(target=work, args=(n,)) for n in names]
    [t.start() for t in ts]
    [t.join() for t in ts]
""")


def test_several_processes_never_over_assign(db: str, world: DemoWorld) -> None:
    store = LabelStore(db)
    store.add_items("p", demo_items(world, 40), overlap=3)
    names = add_users(store, 9)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(db), *names[i::3]], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    per_item = Counter(lab["item_id"] for lab in store.labels("p"))
    assert len(per_item) == 40 and set(per_item.values()) == {3}
    pairs = Counter((lab["item_id"], lab["annotator"]) for lab in store.labels("p"))
    assert max(pairs.values()) == 1
    assert store.check_invariants("p") == []
    store.close()


KILL_WORKER = textwrap.dedent("""
    import sys, threading
    from labeling_ui.queue import LabelQueue
    from labeling_ui.store import LabelStore
    db, names = sys.argv[1], sys.argv[2:]
    store = LabelStore(db)
    q = LabelQueue(store, "p", gold_rate=0.0, lease_seconds=5)
    out = threading.Lock()
    def work(name):
        while (shown := q.next_item(name)) is not None:
            label_id, _ = q.submit(name, shown.assignment_id, "A", 2)
            with out:                  # acknowledged: the label's transaction has committed
                print(label_id, flush=True)
    ts = [threading.Thread(target=work, args=(n,)) for n in names]
    [t.start() for t in ts]
    [t.join() for t in ts]
""")


def test_a_killed_worker_loses_no_acknowledged_label_and_its_leases_return(db: str, world: DemoWorld) -> None:
    """SIGKILL a process labeling from four threads, three times: every label it acknowledged is in
    the database, the counters agree, and the leases it held return to the queue once they expire."""
    store = LabelStore(db)
    store.add_items("p", demo_items(world, 200), overlap=3)
    names = add_users(store, 12)
    acked: set[int] = set()
    for trial in range(3):
        batch = names[4 * trial:4 * trial + 4]
        proc = subprocess.Popen([sys.executable, "-c", KILL_WORKER, db, *batch], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        seen = 0
        assert proc.stdout is not None
        for line in proc.stdout:             # kill it mid-load, once it has acknowledged some labels
            acked.add(int(line))
            seen += 1
            if seen == 15:
                proc.kill()
                break
        proc.wait(timeout=60)
        assert seen == 15, proc.stderr.read()[-2000:]
        acked.update(int(line) for line in proc.stdout.read().split())   # printed before the kill landed
        assert acked <= store.label_ids()
        assert store.check_invariants("p") == []
    with store.read() as c:
        held = {r[0] for r in c.execute("SELECT item_id FROM assignments WHERE status = 'active'")}
    assert held                                           # the killed workers left leases behind ...
    later = LabelQueue(store, "p", gold_rate=0.0, clock=lambda: time.time() + 60)
    assert later.next_item(names[0]) is not None          # ... which expire back into the pool
    with store.read() as c:
        assert c.execute("SELECT COUNT(*) FROM assignments WHERE status = 'expired'").fetchone()[0] >= len(held)
    assert store.check_invariants("p") == []
    store.close()


def test_overlap_trigger_is_a_last_line_of_defence(store: LabelStore, world: DemoWorld) -> None:
    store.add_items("p", demo_items(world, 1), overlap=1)
    alice, bob = add_users(store, 2)
    q = LabelQueue(store, "p", gold_rate=0.0)
    q.submit(alice, q.next_item(alice).assignment_id, "tie")
    with store.write() as c:     # forge a lease past the queue
        c.execute("INSERT INTO assignments (item_id, annotator_id, shown_first, status, leased_at, expires_at) "
                  "VALUES (1, (SELECT id FROM annotators WHERE name = ?), 'A', 'active', 0, 1e12)", (bob,))
    with pytest.raises(IntegrityError, match="overlap exceeded"), store.write() as c:
        c.execute("INSERT INTO labels (item_id, annotator_id, assignment_id, choice, shown_first, created_at) "
                  "VALUES (1, (SELECT id FROM annotators WHERE name = ?), 2, 'tie', 'A', 0)", (bob,))


# ------------------------------------------------------------------------------------------ export and stats
def _label_all(store: LabelStore, q: LabelQueue, names: list[str], plan) -> None:
    for name in names:
        while (shown := q.next_item(name)) is not None:
            choice, strength, flags = plan(name, store.item(shown.item_id), _shown_first(store, shown))
            fl, fr = (flags, []) if choice == "A" else ([], flags)
            q.submit(name, shown.assignment_id, choice, strength, flags_left=fl, flags_right=fr)


def test_export_round_trip(tmp_path: Path, store: LabelStore, world: DemoWorld) -> None:
    from datasets import load_from_disk

    store.add_items("p", demo_items(world, 12), overlap=3)
    store.add_items("p", [{"id": "g", "prompt": "gold?", "response_a": "yes", "response_b": "no", "gold": "A"}])
    names = add_users(store, 3)
    q = LabelQueue(store, "p", gold_rate=0.0)

    def plan(name, item, shown_first):
        n = int(item["ext_id"].split("-")[-1]) if item["ext_id"].startswith("demo") else 0
        if n < 6:       # everyone prefers the stored A, strongly; ann2 flags it
            want, strength = "A", 4 if name != "ann2" else 2
        elif n < 9:     # two ties, one B: a tie majority
            want, strength = ("tie", None) if name != "ann0" else ("B", 1)
        else:           # 2 B vs 1 A
            want, strength = ("B", 3) if name != "ann1" else ("A", 3)
        display = want if want == "tie" or shown_first == "A" else ("B" if want == "A" else "A")
        return display, strength, (["violence"] if name == "ann2" and want == "A" else [])

    _label_all(store, q, names, plan)
    out = tmp_path / "prefs"
    summary = export_preferences(store, "p", out)
    ds = load_from_disk(str(out))
    for col in ("prompt", "chosen", "rejected", "margin", "agreement", "n_labels", "chosen_flags",
                "chosen_flagged", "rejected_flagged"):
        assert col in ds.column_names
    assert len(ds) == 9 and summary["dropped"] == {"tie": 3}
    items = {it["ext_id"]: it for it in store.items("p")}
    for row in ds:
        n = int(row["item_id"].split("-")[-1])
        item = items[row["item_id"]]
        if n < 6:
            assert (row["chosen"], row["rejected"]) == (item["response_a"], item["response_b"])
            assert row["margin"] == pytest.approx((1 + 1 + 1 / 3) / 3) and row["agreement"] == 1.0
            assert row["chosen_flags"] == ["violence"] and row["chosen_flagged"]
        else:
            assert row["chosen"] == item["response_b"] and row["agreement"] == pytest.approx(2 / 3)
            assert row["margin"] == pytest.approx(2 / 3) and not row["chosen_flagged"]
    assert summary["safety"]["chosen_flagged_rate"] == pytest.approx(6 / 9)
    assert summary["safety"]["chosen_flagged_by_category"] == {"violence": 6}
    assert json.loads((out / "summary.json").read_text())["rows"] == 9
    # re-export with ties kept replaces the folder atomically
    summary2 = export_preferences(store, "p", out, keep_ties=True)
    assert len(load_from_disk(str(out))) == 12 and summary2["rows_by_label"]["tie"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".prefs")]
    rows, _ = aggregate(store, "p", include_gold=True)
    assert len(rows) == 9   # the gold item has no labels (gold_rate 0)

    stats = project_stats(store, "p")
    ag = stats["agreement"]
    assert 0 < ag["with_ties"] < 1 and ag["krippendorff_alpha_ordinal"] is not None
    assert len(ag["cohen_kappa"]) == 3 and stats["items"]["complete"] == 12
    assert stats["safety_flags"]["by_category"]["violence"] == 6


def test_cli_import_export_and_config_errors(tmp_path: Path, world: DemoWorld,
                                             caplog: pytest.LogCaptureFixture) -> None:
    from alignment.labeling import main

    db = tmp_path / "cli.db"
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(i) for i in demo_items(world, 5)) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(data.read_text() + '{"prompt": "x"}\n')
    common = [f"label.db={db}", f"run.dir={tmp_path}"]
    assert main(["import", str(data), *common]) == 0
    assert main(["import", str(bad), *common, "label.project=other"]) == 2
    assert "bad.jsonl:6: missing key 'response_a'" in caplog.text
    assert count_rows(db)["items"] == 5
    assert main(["import", str(data), *common, "label.no_such_key=1"]) == 2
    assert "no_such_key" in caplog.text
    assert main(["export", *common]) == 0
    assert (tmp_path / "labels" / "preferences" / "summary.json").is_file()
