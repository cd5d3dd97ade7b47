"""Campaign readiness of the labeling store and CLI (issue 16): a safe export, withdrawn labels,
notes, import edge cases, explicit projects, account commands and the bots' exit status."""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
from pathlib import Path

import pytest

from alignment.data.world import DemoWorld
from alignment.errors import UserError
from alignment.labeling import main
from labeling_ui.agreement import project_stats
from labeling_ui.demo import demo_items
from labeling_ui.export import MARKER, aggregate, export_preferences
from labeling_ui.importer import import_file, read_jsonl
from labeling_ui.passwords import hash_password
from labeling_ui.queue import LabelQueue
from labeling_ui.schema import MIGRATIONS, split_sql
from labeling_ui.store import SCHEMA_VERSION, LabelStore


def write_pairs(path: Path, items: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(i) for i in items) + "\n", encoding="utf-8")
    return path


def tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# ------------------------------------------------------------------------------------------ defect 1: export
def test_export_refuses_to_replace_a_folder_it_did_not_write(tmp_path: Path, world: DemoWorld,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    scratch = tmp_path / "runs" / "scratch"
    pairs = write_pairs(tmp_path / "pairs.jsonl", demo_items(world, 4))
    assert main(["import", str(pairs), f"run.dir={scratch}", "label.project=round1"]) == 0
    (scratch / "notes.txt").write_text("keep me")
    before = tree(scratch)
    # The command shape: the run folder itself as --out.
    for project in ("round1", "bad"):
        caplog.clear()
        assert main(["export", f"run.dir={scratch}", f"label.project={project}", "--out", str(scratch)]) == 2
        assert tree(scratch) == before
        with sqlite3.connect(scratch / "labels" / "labels.db") as c:
            assert c.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 4
        if project == "round1":
            assert f"{scratch} exists and is not a previous export" in caplog.text
    assert not [p for p in scratch.parent.iterdir() if p.name.startswith(".scratch")]


def test_export_replaces_its_own_previous_export_only(tmp_path: Path, store: LabelStore, world: DemoWorld) -> None:
    store.add_items("p", demo_items(world, 2), overlap=1)
    out = tmp_path / "prefs"
    export_preferences(store, "p", out)
    assert json.loads((out / MARKER).read_text())["project"] == "p"
    export_preferences(store, "p", out)                      # its own export: replaced
    (out / "mine.txt").write_text("x")
    export_preferences(store, "p", out)                      # the marker still says it is an export
    assert not (out / "mine.txt").exists()
    legacy = tmp_path / "legacy"                             # an export written before the marker
    export_preferences(store, "p", legacy)
    (legacy / MARKER).unlink()
    export_preferences(store, "p", legacy)
    assert (legacy / MARKER).is_file()
    (tmp_path / "empty").mkdir()
    export_preferences(store, "p", tmp_path / "empty")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        export_preferences(store, "p", a_file)


# ------------------------------------------------------------------------------------------ defect 8: undo
def test_undo_withdraws_labels_and_ids_are_never_reused(store: LabelStore, world: DemoWorld) -> None:
    store.add_items("p", demo_items(world, 3), overlap=1)
    store.add_annotator("ann", "password-123")
    q = LabelQueue(store, "p", gold_rate=0.0)
    shown = q.next_item("ann")
    ids = []
    for choice in ("A", "B", "tie"):
        label_id, _ = q.submit("ann", shown.assignment_id, choice, 2 if choice != "tie" else None, note=choice)
        ids.append(label_id)
        if choice != "tie":
            shown = q.undo("ann")
    assert len(set(ids)) == 3 and ids == sorted(ids)        # "Saved label #6" three times no more
    assert [lab["id"] for lab in store.labels("p")] == [ids[2]]
    trail = store.labels("p", withdrawn=True)
    assert [lab["id"] for lab in trail] == ids and [lab["withdrawn_at"] is not None for lab in trail] == [
        True, True, False]
    assert store.check_invariants("p") == []
    assert q.progress("ann")["labeled"] == 1
    assert project_stats(store, "p")["labels"]["withdrawn_by_undo"] == 2
    # the withdrawn labels count nowhere: the item is complete with the one label in force, and a
    # second annotator cannot get it (the overlap is 1)
    store.add_annotator("bob", "password-123")
    assert {q.next_item("bob").item_id} & {shown.item_id} == set()
    rows, _ = aggregate(store, "p", keep_ties=True)
    assert [r["label"] for r in rows] == ["tie"] and rows[0]["n_labels"] == 1


def test_an_old_database_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as c:                         # a database as schema version 1 wrote it
        for statement in split_sql(MIGRATIONS[0][1], "sqlite"):
            c.execute(statement)
        c.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                  "applied_at REAL NOT NULL)")
        c.execute("INSERT INTO schema_version VALUES (1, 'initial schema', 0)")
        c.execute("PRAGMA user_version = 1")
        c.execute("INSERT INTO projects VALUES (1, 'p', 2, 0)")
        for i in (1, 2):
            labeled = int(i == 1)
            c.execute("INSERT INTO items (id, project_id, ext_id, prompt, response_a, response_b, slots_left, "
                      "created_at, n_labels) VALUES (?, 1, ?, 'q', 'a', 'b', ?, 0, ?)", (i, f"i{i}", 2 - labeled, labeled))
        c.execute("INSERT INTO annotators VALUES (1, 'ann', 'annotator', ?, 1, 0)", (hash_password("password-123"),))
        c.execute("INSERT INTO assignments VALUES (7, 1, 1, 'A', 'labeled', 0, 600, 1)")
        c.execute("INSERT INTO labels (id, item_id, annotator_id, assignment_id, choice, shown_first, strength, "
                  "note, time_ms, created_at) VALUES (5, 1, 1, 7, 'A', 'A', 3, 'old note', 1000, 1)")
    store = LabelStore(path)
    assert store.schema_version() == SCHEMA_VERSION
    [old] = store.labels("p")
    assert (old["id"], old["note"], old["withdrawn_at"]) == (5, "old note", None)
    assert store.check_invariants("p") == [] and store.session_epoch("ann") == 0
    q = LabelQueue(store, "p", gold_rate=0.0)
    assert q.undo("ann").assignment_id == 7                  # withdraws label 5, re-opens its assignment
    new_id, _ = q.submit("ann", 7, "B", 2)
    assert new_id > 5 and [lab["id"] for lab in store.labels("p", withdrawn=True)] == [5, new_id]
    store.close()


# ------------------------------------------------------------------------------------------ defect 7: notes
def test_notes_are_exported_and_listed(tmp_path: Path, store: LabelStore, world: DemoWorld) -> None:
    from datasets import load_from_disk

    store.add_items("p", demo_items(world, 1), overlap=2)
    q = LabelQueue(store, "p", gold_rate=0.0)
    for name, note in (("ann0", "unsure <b>about</b> this"), ("ann1", "")):
        store.add_annotator(name, "password-123")
        shown = q.next_item(name)
        q.submit(name, shown.assignment_id, "tie", note=note)
    export_preferences(store, "p", tmp_path / "out", keep_ties=True)
    [row] = load_from_disk(str(tmp_path / "out"))
    assert row["notes"] == ["unsure <b>about</b> this"]
    [listed] = store.recent_notes("p")
    assert (listed["annotator"], listed["note"], listed["withdrawn"]) == ("ann0", "unsure <b>about</b> this", False)

    from labeling_ui.tabs.admin import notes_markdown
    md = notes_markdown(store.recent_notes("p"))
    assert "&lt;b&gt;about&lt;/b&gt;" in md and "<b>" not in md


# ------------------------------------------------------------------------------------------ defect 10: min_labels
def test_export_defaults_to_complete_items(store: LabelStore, world: DemoWorld, tmp_path: Path) -> None:
    store.add_items("p", demo_items(world, 2), overlap=3)
    store.add_annotator("ann", "password-123")
    q = LabelQueue(store, "p", gold_rate=0.0)
    shown = q.next_item("ann")
    q.submit("ann", shown.assignment_id, "A", 3)
    rows, summary = aggregate(store, "p")
    assert rows == [] and summary["dropped"] == {"below_min_labels": 1} and summary["options"]["min_labels"] == 3
    assert len(aggregate(store, "p", min_labels=1)[0]) == 1   # the option stays
    from alignment.config import LabelExportConfig
    assert LabelExportConfig().min_labels is None


def test_an_export_before_any_item_is_complete_loads_empty_and_says_why(
        tmp_path: Path, world: DemoWorld, caplog: pytest.LogCaptureFixture) -> None:
    from datasets import load_from_disk

    db, out = tmp_path / "l.db", tmp_path / "prefs"
    common = [f"label.db={db}", f"run.dir={tmp_path}", "label.project=p"]
    assert main(["import", str(write_pairs(tmp_path / "pairs.jsonl", demo_items(world, 3))), *common]) == 0
    store = LabelStore(db)
    store.add_annotator("ann", "password-123")
    q = LabelQueue(store, "p", gold_rate=0.0)
    q.submit("ann", q.next_item("ann").assignment_id, "A", 3)
    store.close()
    caplog.clear()
    assert main(["export", "--out", str(out), *common]) == 0
    dataset = load_from_disk(str(out))
    assert len(dataset) == 0 and {"prompt", "chosen", "rejected", "margin"} <= set(dataset.column_names)
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "1 of 3 items have labels, 1 of them fewer than label.export.min_labels=3" in warning
    assert json.loads((out / "summary.json").read_text())["rows"] == 0


# ------------------------------------------------------------------------------------------ defect 6: import
def test_import_edge_cases_name_file_and_line(tmp_path: Path, store: LabelStore, world: DemoWorld) -> None:
    good = [json.dumps(i) for i in demo_items(world, 3)]
    bad_utf8 = tmp_path / "latin1.jsonl"
    bad_utf8.write_bytes((good[0] + "\n").encode() + '{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1\.jsonl:2: not UTF-8 text"):
        read_jsonl(bad_utf8)
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UserError, match=r"model\.bin:1: "):
        read_jsonl(binary)
    with pytest.raises(UserError, match="is a directory"):
        read_jsonl(tmp_path)
    bom = tmp_path / "excel.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + "\n".join(good).encode() + b"\n")
    items, lines = read_jsonl(bom)
    assert len(items) == 3 and lines == [1, 2, 3]
    huge = dict(demo_items(world, 1)[0], id="huge", response_b="x" * 1_000_000)
    long_file = tmp_path / "long.jsonl"
    long_file.write_text(good[0] + "\n" + json.dumps(huge) + "\n")
    with pytest.raises(UserError, match=r"long\.jsonl:2: response_b has 1,000,000 characters.*max_text_chars"):
        import_file(store, "p", long_file)
    assert import_file(store, "p", long_file, max_text_chars=2_000_000) == 2
    assert store.project_names() == ["p"]


def test_cli_import_errors_exit_2_with_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"prompt": "\xff"}\n')
    common = [f"label.db={tmp_path / 'l.db'}", f"run.dir={tmp_path}"]
    assert main(["import", str(bad), *common]) == 2
    assert f"{bad}:1: not UTF-8 text" in caplog.text and "Traceback" not in caplog.text
    assert main(["import", str(tmp_path), *common]) == 2
    assert "is a directory" in caplog.text


# ------------------------------------------------------------------------------------------ defect 4: projects
def test_serving_a_missing_project_names_the_ones_there_are(tmp_path: Path, world: DemoWorld,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from alignment.labeling import compose
    from labeling_ui.cli import open_queue, parser

    db = tmp_path / "l.db"
    pairs = write_pairs(tmp_path / "pairs.jsonl", demo_items(world, 2))
    assert main(["import", str(pairs), f"label.db={db}", f"run.dir={tmp_path}", "label.project=round1"]) == 0
    with socket.socket() as taken:          # should it get as far as serving, it fails at once, not blocks
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", f"label.db={db}", f"run.dir={tmp_path}", f"label.port={port}"]) == 2
    assert "no project named 'default'" in caplog.text and "'round1'" in caplog.text
    with sqlite3.connect(db) as c:
        assert [r[0] for r in c.execute("SELECT name FROM projects")] == ["round1"]
    cfg = compose([f"label.db={db}", f"run.dir={tmp_path}", "label.project=new"])
    store = LabelStore(db)
    assert open_queue(cfg, store, create=True).project.name == "new"   # creating is explicit
    assert parser().parse_args(["serve", "--create"]).create
    store.close()


# ------------------------------------------------------------------------------------------ defect 2: accounts
def test_deactivate_and_reactivate_commands(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "l.db"
    common = [f"label.db={db}", f"run.dir={tmp_path}"]
    store = LabelStore(db)
    store.add_annotator("ann", "password-123")
    epoch = store.session_epoch("ann")
    assert main(["deactivate", "ann", *common]) == 0
    assert store.annotator("ann") is None and not store.check_password("ann", "password-123")
    assert store.session_epoch("ann") is None
    assert main(["reactivate", "ann", *common]) == 0
    assert store.check_password("ann", "password-123") and store.session_epoch("ann") > epoch
    before = store.session_epoch("ann")
    store.add_annotator("ann", "password-456", update=True)  # a password change ends old sessions too
    assert store.session_epoch("ann") > before
    assert main(["deactivate", "nobody", *common]) == 2
    assert "no annotator named 'nobody'" in caplog.text
    store.close()


# ------------------------------------------------------------------------------------------ defect 3: timing
def test_a_failed_login_costs_one_scrypt_known_or_not(store: LabelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.add_annotator("ann", "password-123")
    calls = []
    real = hashlib.scrypt

    def counting(*args, **kwargs):
        calls.append(kwargs.get("n"))
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    for name in ("ann", "nobody"):
        calls.clear()
        assert not store.check_password(name, "wrong-password")
        assert calls == [2 ** 14], name                     # one scrypt, with the real cost, either way


# ------------------------------------------------------------------------------------------ defect 10: bots
def test_bots_exit_non_zero_when_they_fail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from labeling_ui.serving import free_port

    url = f"http://127.0.0.1:{free_port()}/"                 # nothing listens there
    assert main(["bots", "--n", "2", "--url", url, f"label.db={tmp_path / 'l.db'}", f"run.dir={tmp_path}"]) == 1
    assert "2 of 2 bot(s) failed" in caplog.text
