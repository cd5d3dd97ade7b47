"""The labeling app's HTTP API: login required, per-annotator isolation, admin checks, bots end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.data.world import DemoWorld
from label_app import ApiClient, RunningApp, app_fixture, fn_index, queue_call, start_app
from labeling_ui.bots import BotBrain, fallback_label, run_bots
from labeling_ui.demo import demo_items

PASSWORD = "pass-word-1"


app = app_fixture("label-api", n_items=30, overlap=2, password=PASSWORD, export=True,
                  users={"alice": "annotator", "bob": "annotator", "root": "admin", "gone": "annotator"})


@pytest.fixture
def alice(app: RunningApp) -> ApiClient:
    c = ApiClient(app.url, "alice", PASSWORD)
    yield c
    c.close()


@pytest.fixture
def bob(app: RunningApp) -> ApiClient:
    c = ApiClient(app.url, "bob", PASSWORD)
    yield c
    c.close()




@pytest.mark.slow
def test_unauthenticated_calls_get_nothing(app: RunningApp) -> None:
    anon = ApiClient(app.url)
    for api_name, data in (("next_item", []), ("submit_label", [1, "A", 2, [], [], "", None]),
                           ("undo_label", []), ("my_progress", []), ("skip_item", [1])):
        r = anon.raw(api_name, *data)
        assert r.status_code == 401, (api_name, r.text)
        assert "prompt" not in r.text
    for path in ("/config", "/gradio_api/info"):
        assert anon.http.get(path).status_code == 401
    assert anon.http.get("/gradio_api/openapi.json").status_code == 404       # turned off for everyone
    r = anon.http.post("/gradio_api/queue/join", json={"data": [], "fn_index": fn_index(app, "on_refresh"),
                                                       "session_hash": "x"})
    assert r.status_code == 401
    assert anon.http.post("/login", data={"username": "alice", "password": "wrong-one"}).status_code == 400
    assert anon.http.post("/login", data={"username": "nobody", "password": PASSWORD}).status_code == 400
    anon.close()


def test_annotators_cannot_touch_each_others_data(app: RunningApp, alice: ApiClient, bob: ApiClient) -> None:
    a_item = alice.call("next_item")
    b_item = bob.call("next_item")
    assert a_item["assignment"] != b_item["assignment"]
    assert alice.call("next_item")["assignment"] == a_item["assignment"]     # a reload keeps the lease
    done = alice.call("submit_label", a_item["assignment"], "A", 3, ["violence"], [], "my note", None)
    assert done["ok"] and done["next"]["assignment"] not in (None, a_item["assignment"])
    alice_labels = [lab for lab in app.store.labels("p") if lab["annotator"] == "alice"]
    assert len(alice_labels) == 1
    # bob tries alice's finished and current assignments: nothing changes, nothing leaks
    for target in (a_item["assignment"], done["next"]["assignment"]):
        r = bob.call("submit_label", target, "B", 4, [], [], "", None)
        assert (r["ok"], r["error"], r["next"]["assignment"]) == (False, "no such assignment", b_item["assignment"])
        r = bob.call("skip_item", target)
        assert not r["ok"] and r["next"]["assignment"] == b_item["assignment"]
    undone = bob.call("undo_label")                  # bob has no label: his own current item, alice untouched
    assert undone["next"]["assignment"] == b_item["assignment"]
    assert [lab["id"] for lab in app.store.labels("p") if lab["annotator"] == "alice"] == [alice_labels[0]["id"]]
    assert bob.call("my_progress")["labeled"] == 0 and alice.call("my_progress")["labeled"] == 1
    # undo is alice's own
    back = alice.call("undo_label")
    assert back["next"]["assignment"] == a_item["assignment"]
    assert alice.call("my_progress")["labeled"] == 0
    redo = alice.call("submit_label", a_item["assignment"], "tie", None, [], [], "", None)
    assert redo["ok"]
    assert app.store.check_invariants("p") == []


def test_api_rejects_bad_labels_without_storing(alice: ApiClient, app: RunningApp) -> None:
    item = alice.call("next_item")
    before = len(app.store.labels("p"))
    for args in (("A", None), ("A", 9), ("perhaps", 1)):
        r = alice.call("submit_label", item["assignment"], *args, [], [], "", None)
        assert not r["ok"] and r["next"]["assignment"] == item["assignment"]
    r = alice.call("submit_label", item["assignment"], "tie", None, ["not-a-category"], [], "", None)
    assert not r["ok"] and "category" in r["error"]
    assert len(app.store.labels("p")) == before


def test_admin_handlers_check_the_role_on_every_call(app: RunningApp, bob: ApiClient) -> None:
    for name in ("on_refresh", "on_export"):
        msg = queue_call(bob.http, fn_index(app, name), [], bob.session_hash)
        assert msg["success"] is False and "Admins only" in json.dumps(msg), msg
    root = ApiClient(app.url, "root", PASSWORD)
    msg = queue_call(root.http, fn_index(app, "on_refresh"), [], root.session_hash)
    assert msg["success"] is True and "Per annotator" in json.dumps(msg["output"])
    msg = queue_call(root.http, fn_index(app, "on_export"), [], root.session_hash)
    assert msg["success"] is True and "Exported" in json.dumps(msg["output"])
    root.close()


def test_a_deactivated_account_loses_access_at_once(app: RunningApp) -> None:
    gone = ApiClient(app.url, "gone", PASSWORD)
    assert gone.call("next_item")["assignment"] is not None
    app.store.deactivate_annotator("gone")
    r = gone.raw("next_item")
    assert r.status_code >= 400 and "prompt" not in r.text
    gone.close()


def test_bot_brain_uses_the_demo_world_and_a_stable_fallback() -> None:
    world = DemoWorld(0)
    item = demo_items(world, 1)[0]
    brain = BotBrain(world, noise=0.0)
    d = brain.decide(item["prompt"], item["response_a"], item["response_b"])
    prompt = world.find(item["prompt"])
    better = "A" if world.gold_reward(prompt, item["response_a"]) > world.gold_reward(prompt, item["response_b"]) else "B"
    assert d["choice"] == better
    c1, s1 = fallback_label("not a demo prompt", "x", "y")
    c2, s2 = fallback_label("not a demo prompt", "y", "x")
    assert {c1, c2} == {"A", "B"} and s1 == s2        # position-independent


@pytest.mark.slow
def test_bots_label_end_to_end_through_gradio_client(tmp_path: Path) -> None:
    running = start_app(tmp_path / "bots.db", overlap=2, export_dir=tmp_path / "export")
    try:
        running.store.add_items("p", demo_items(DemoWorld(0), 8), overlap=2)
        result = run_bots(running.store, running.url + "/", n=3, noise=0.0)
        assert result["labels"] == 16, result
        per_item: dict[int, set] = {}
        for lab in running.store.labels("p"):
            per_item.setdefault(lab["item_id"], set()).add(lab["annotator"])
        assert len(per_item) == 8 and all(len(v) == 2 for v in per_item.values())
        assert running.store.check_invariants("p") == []
    finally:
        running.close()
