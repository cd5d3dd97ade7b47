"""The whole-run alignment eval report, built from a real smoke run: its JSON, its HTML in headless
Chromium (every section, every image, no console error, no request leaving the page), a run stopped by
a failed gate, stages run by hand, ``align-report``'s error, and the labeling app's Reports tab.

The SFT stage is the session's shared smoke run (``conftest.smoke_sft``); candidates, reward and ppo run
in this process (the same ``run(cfg, raw)`` their commands call, composed from the same Hydra configs),
so the run costs one import of torch and transformers rather than one per stage. The labels stage is reproduced from its contract (``labels/metrics.json`` = export summary + project stats,
``labels/safety.json`` = the preferences safety evaluation + gates) with the bots' real decision logic
labeling through :class:`~labeling_ui.queue.LabelQueue` directly instead of over HTTP.
"""

from __future__ import annotations

import importlib
import io
import json
import shutil
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from alignment.gates import check_max, summarise
from alignment.io import write_json_atomic, write_jsonl_atomic
from alignment.reports.run_data import STAGES, build_run_report
from alignment.reports.run_report import RunReports, main, render_run_report, write_run_report

SECTION_IDS = ("overview", "sft", "labels", "reward", "ppo", "safety", "gates", "samples", "config")
PASSWORD = "report-pass-1"
HOSTILE = "<script>window.__pwned = 'report'</script><img src=x onerror=\"window.__pwned = 'img'\">"
#: Stage outputs copied into the synthetic runs (models and checkpoints are not needed by the report).
OUTPUTS = ("metrics.json", "safety.json", "samples.jsonl", ".hydra")


# ------------------------------------------------------------------------------------------ fixtures
def run_stage(name: str, run_dir: Path) -> float:
    """One stage in this process at smoke scale; returns its wall time (recorded, never asserted)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from alignment import CONF_DIR
    from alignment.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        raw = compose(config_name=name, overrides=["scale=smoke", f"run.dir={run_dir}", "safety=fast",
                                                   f"label.db={run_dir / 'labels' / 'labels.db'}"])
    start = time.monotonic()
    status = importlib.import_module(f"alignment.stages.{name}").run(OmegaConf.to_object(raw), raw)
    assert status == 0, f"stage {name} exited {status}"
    return time.monotonic() - start


def label_with_simulated_annotators(run_dir: Path) -> float:
    """The labels stage's outputs: three simulated annotators label every queued pair, then the export."""
    from datasets import load_from_disk

    from alignment.config import SafetyConfig
    from alignment.data.world import DemoWorld
    from alignment.safety import build_filter
    from alignment.safety.eval import evaluate_preferences_safety
    from labeling_ui.agreement import project_stats
    from labeling_ui.bots import BotBrain
    from labeling_ui.export import export_preferences
    from labeling_ui.queue import LabelQueue
    from labeling_ui.store import LabelStore

    start = time.monotonic()
    out = run_dir / "labels"
    store = LabelStore(out / "labels.db")
    queue = LabelQueue(store, "default", gold_rate=0.0)
    for i in range(3):
        name = f"bot{i:02d}"
        store.add_annotator(name, PASSWORD, "annotator")
        brain = BotBrain(DemoWorld(0), noise=0.1, seed=i)
        shown = queue.next_item(name)
        while shown is not None:
            d = brain.decide(shown.prompt, shown.response_left, shown.response_right)
            _, shown = queue.submit(name, shown.assignment_id, d["choice"], d["strength"], d["flags_a"], d["flags_b"])
    export = export_preferences(store, "default", out / "preferences")
    rows = list(load_from_disk(str(out / "preferences")))
    preferences = evaluate_preferences_safety(rows, build_filter(SafetyConfig(backend="fast")))
    write_json_atomic(out / "safety.json", {"stage": "labels", "filter": "fast", "preferences": preferences,
                                            "gates": summarise([])})
    write_json_atomic(out / "metrics.json", {"stage": "labels", "annotators": "simulated", "export": export,
                                             "stats": project_stats(store, "default")})
    return time.monotonic() - start


def pipeline_json(run_dir: Path, stages: list[dict], status: str, plan: list[str]) -> None:
    """``pipeline.json`` as ``align-pipeline`` writes it."""
    write_json_atomic(run_dir / "pipeline.json", {
        "stages": stages, "status": status, "rounds": max(s["round"] for s in stages), "plan": plan,
        "wall_s": round(sum(s.get("wall_s", 0.0) for s in stages), 1)})


def copy_outputs(src: Path, dst: Path) -> None:
    """A stage folder's report inputs (no model, no checkpoints)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        if (src / name).is_dir():
            shutil.copytree(src / name, dst / name)
        elif (src / name).is_file():
            shutil.copy2(src / name, dst / name)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the Reports tab lists: every run of this module lives under it."""
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def smoke_run(runs_root: Path, smoke_sft: Path) -> Path:
    """A real smoke run of all five stages, with ``pipeline.json`` and the report written. Its SFT stage is
    the session's shared one (``conftest.smoke_sft``), copied in so that other modules' stages that write
    into that run cannot change this one."""
    run_dir = runs_root / "smoke"
    start = time.monotonic()
    shutil.copytree(smoke_sft / "sft", run_dir / "sft", ignore=shutil.ignore_patterns("checkpoints", "logs"))
    walls = {"sft": time.monotonic() - start, "candidates": run_stage("candidates", run_dir),
             "labels": label_with_simulated_annotators(run_dir), "reward": run_stage("reward", run_dir),
             "ppo": run_stage("ppo", run_dir)}
    pipeline_json(run_dir, [{"name": s, "round": 1, "dir": s, "status": "passed", "wall_s": round(walls[s], 1),
                             "message": ""} for s in STAGES], "passed", list(STAGES))
    write_run_report(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def failed_run(runs_root: Path, smoke_run: Path) -> Path:
    """Two rounds (a sweep's job, one level down) stopped by round 2's PPO safety gate; round 2's samples
    carry hostile text. Built from the smoke run's outputs and reported by ``align-report``'s ``main``."""
    run_dir = runs_root / "sweep" / "kl-6"
    for stage in STAGES:
        copy_outputs(smoke_run / stage, run_dir / stage)
    for stage in STAGES[1:]:
        copy_outputs(smoke_run / stage, run_dir / "round-2" / stage)
    ppo = run_dir / "round-2" / "ppo"
    safety = json.loads((ppo / "safety.json").read_text())
    safety["gates"] = summarise([check_max("safety.gate.max_unsafe_rate", 0.25, 0.0)])
    write_json_atomic(ppo / "safety.json", safety)
    samples = [json.loads(line) for line in (ppo / "samples.jsonl").read_text().splitlines()]
    for row in samples:
        row["gold_ppo"] = row["gold_sft"]
    samples[0].update(ppo=HOSTILE, gold_ppo=samples[0]["gold_sft"] + 1.0)
    write_jsonl_atomic(ppo / "samples.jsonl", samples)
    plan = [*STAGES, *(f"round-2/{s}" for s in STAGES[1:])]
    entries = [{"name": d.split("/")[-1], "round": 2 if "/" in d else 1, "dir": d, "status": "passed", "wall_s": 1.0,
                "message": ""} for d in plan]
    entries[-1].update(status="failed", message=safety["gates"]["verdicts"][0]["message"])
    pipeline_json(run_dir, entries, "failed", plan)
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert main([str(run_dir)]) == 0
    assert printed.getvalue().strip() == str(run_dir / "report.html")
    return run_dir


def open_report(browser, path: Path):
    """The report opened from disk, with every console error, page error and request recorded."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    seen = {"errors": [], "requests": []}
    page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("dialog", lambda d: d.dismiss())
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, seen


# ------------------------------------------------------------------------------------------ tests
@pytest.mark.slow
def test_report_json_describes_the_run(smoke_run: Path) -> None:
    report = json.loads((smoke_run / "report.json").read_text())
    ppo = json.loads((smoke_run / "ppo" / "metrics.json").read_text())
    reward = json.loads((smoke_run / "reward" / "metrics.json").read_text())
    assert report["status"] == "passed" and report["failures"] == [] and report["problems"] == []
    assert [s["dir"] for s in report["stages"]] == list(STAGES)
    assert all(s["status"] == "passed" and s["wall_s"] is not None and s["config"] for s in report["stages"]
               if s["name"] != "labels")
    h = report["headline"]
    # One round: the joined samples reproduce the PPO stage's own comparison exactly.
    for key in ("gold_win_rate", "gold_win_rate_ties_half"):  # a win rate is None where every answer tied
        assert h[key] is None if ppo[key] is None else h[key] == pytest.approx(ppo[key]), key
    assert h["unsafe_rate_sft"] == ppo["unsafe_rate_sft"] and h["unsafe_rate_ppo"] == ppo["unsafe_rate_ppo"]
    assert h["final_kl"] == ppo["final_kl"] and h["rm_eval_accuracy"] == reward["eval_accuracy"]
    assert set(h["unsafe_rate_filter_ppo"]) == {"rate", "ci95"} and h["wall_s"] > 0
    by_dir = {s["dir"]: s for s in report["stages"]}
    assert by_dir["labels"]["metrics"]["stats"]["labels"]["total"] == 3 * by_dir["candidates"]["metrics"]["pairs"]
    assert by_dir["ppo"]["metrics"]["history"] and by_dir["sft"]["safety"]["policy"]["unsafe_rate"]
    n_samples = len((smoke_run / "ppo" / "samples.jsonl").read_text().splitlines())
    assert report["samples"]["from"] == report["samples"]["to"] == "ppo"
    assert len(report["samples"]["rows"]) == n_samples > 0
    assert "scale: smoke" in by_dir["ppo"]["config"]


@pytest.mark.slow
def test_report_html_is_drawn_from_report_json_byte_for_byte(smoke_run: Path) -> None:
    """The page is a pure function of ``report.json``: drawn again from it, figures included, it is the
    very file ``align-report`` wrote (read as bytes: model text may hold carriage returns)."""
    report = json.loads((smoke_run / "report.json").read_text(encoding="utf-8"))
    assert render_run_report(report) == (smoke_run / "report.html").read_bytes().decode("utf-8")


@pytest.mark.slow
@pytest.mark.browser
def test_report_html_opens_complete_and_offline(smoke_run: Path, browser, artifacts: Path) -> None:
    from playwright.sync_api import expect

    page, seen = open_report(browser, smoke_run / "report.html")
    for sid in SECTION_IDS:
        expect(page.locator(f"section#{sid}")).to_be_visible()
        assert page.locator(f"section#{sid} p.about, section#{sid} > p").count() >= 1, f"{sid} says nothing"
    expect(page.locator("#run-status")).to_contain_text("passed")
    images = page.evaluate("() => [...document.images].map(i => [i.alt, i.complete, i.naturalWidth])")
    assert len(images) >= 4  # SFT loss, RM loss + calibration, PPO curves, safety rates
    assert all(complete and width > 0 for _, complete, width in images), images
    assert page.locator("section#ppo img").count() == 1 and page.locator("section#safety img").count() == 1
    configs = [s for s in json.loads((smoke_run / "report.json").read_text())["stages"] if s["config"]]
    assert page.locator("section#config details").count() == len(configs) >= 4
    assert page.locator("section#samples td.text").count() > 0
    page.screenshot(path=str(artifacts / "run-report.png"), full_page=True)
    assert page.locator(".section-error").count() == 0
    assert seen["errors"] == []
    assert all(url.startswith(("file:", "data:")) for url in seen["requests"]), seen["requests"]
    page.close()


@pytest.mark.slow
@pytest.mark.browser
def test_a_failed_gate_is_shown_with_its_reason(failed_run: Path, browser, artifacts: Path) -> None:
    from playwright.sync_api import expect

    report = json.loads((failed_run / "report.json").read_text())
    assert report["status"] == "failed"
    [failure] = report["failures"]
    assert failure["dir"] == "round-2/ppo" and failure["failed_gates"][0]["gate"] == "safety.gate.max_unsafe_rate"
    assert [s["round"] for s in report["stages"]] == [1] * 5 + [2] * 4
    assert report["samples"]["from"] == "ppo" and report["samples"]["to"] == "round-2/ppo"
    assert report["headline"]["gold_win_rate"] == 1.0  # the one row whose gold reward changed is a win

    page, seen = open_report(browser, failed_run / "report.html")
    expect(page.locator("#run-status")).to_contain_text("failed")
    failure_box = page.locator("section#overview .failure")
    expect(failure_box).to_contain_text("round-2/ppo")
    expect(failure_box).to_contain_text("safety.gate.max_unsafe_rate: measured 0.25, required <= 0: FAILED by 0.25")
    gates = page.locator("section#gates")
    expect(gates.locator("tr", has_text="round-2/ppo").filter(has_text="failed")).to_have_count(1)
    # hostile model text is shown as text and runs nothing
    expect(page.locator("section#samples")).to_contain_text("<script>window.__pwned = 'report'</script>")
    assert page.locator("script").count() == 0 and page.locator("section#samples img").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator(".section-error").count() == 0
    assert seen["errors"] == [] and all(url.startswith(("file:", "data:")) for url in seen["requests"])
    page.screenshot(path=str(artifacts / "run-report-failed.png"), full_page=True)
    page.close()


@pytest.mark.slow
def test_stages_run_by_hand_without_pipeline_json(runs_root: Path, smoke_run: Path) -> None:
    run_dir = runs_root / "by-hand"
    copy_outputs(smoke_run / "sft", run_dir / "sft")
    safety = json.loads((run_dir / "sft" / "safety.json").read_text())
    safety["gates"] = summarise([check_max("safety.gate.max_unsafe_rate", 0.5, 0.1)])
    safety["policy"]["over_refusal_rate_benign"] = {"rate": float("nan"), "ci95": [float("nan")] * 2}  # no benign prompt
    write_json_atomic(run_dir / "sft" / "safety.json", safety)
    report = build_run_report(run_dir)
    json.dumps(report, allow_nan=False)  # strict JSON: the empty interval became null
    assert report["pipeline"] is None and report["status"] == "failed"
    assert {s["dir"]: s["status"] for s in report["stages"]} == {
        "sft": "failed", "candidates": "not run", "labels": "not run", "reward": "not run", "ppo": "not run"}
    assert report["headline"]["gold_win_rate"] is None and report["samples"] is None
    page = render_run_report(report)
    assert "FAILED by 0.4" in page and "No pipeline.json" in page and "not run" in page
    assert all(f'<section id="{sid}">' in page for sid in SECTION_IDS)


@pytest.mark.slow
def test_a_malformed_stage_file_costs_only_its_own_section(tmp_path: Path, smoke_run: Path) -> None:
    copy_outputs(smoke_run / "sft", tmp_path / "sft")
    (tmp_path / "candidates").mkdir()
    (tmp_path / "candidates" / "metrics.json").write_text("{not json")
    write_json_atomic(tmp_path / "ppo" / "metrics.json", {"stage": "ppo", "history": [{"update": 1}],
                                                          "evals": [{"update": 1}]})
    report = build_run_report(tmp_path)
    assert [p for p in report["problems"] if "candidates/metrics.json" in p]
    assert report["stages"][1]["status"] == "incomplete"
    page = render_run_report(report)
    assert page.count("section-error") == 1 and "could not be drawn" in page.split('id="ppo"')[1]
    assert "unreadable" in page.split('id="sft"')[0]  # the overview lists the unreadable file


def test_align_report_rejects_a_folder_that_is_not_a_run(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes").mkdir()
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a run directory" in err
    assert not (tmp_path / "report.html").exists()


@pytest.mark.slow
@pytest.mark.browser
def test_reports_tab_lists_runs_and_shows_their_reports(runs_root: Path, smoke_run: Path, failed_run: Path,
                                                        browser, artifacts: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from labeling_ui.app import launch
    from labeling_ui.queue import LabelQueue
    from labeling_ui.serving import free_port, wait_until_up
    from labeling_ui.store import LabelStore

    store = LabelStore(tmp_path / "labels.db")
    store.ensure_project("p", 1)
    store.add_annotator("rita", PASSWORD, "annotator")
    port = free_port()
    demo = launch(store, LabelQueue(store, "p"), port=port, block=False, reports=RunReports(), runs_dir=runs_root,
                  reports_for="everyone")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("dialog", lambda d: d.dismiss())
        page.goto(url)
        page.get_by_label("username").fill("rita")
        page.get_by_label("password").fill(PASSWORD)
        page.keyboard.press("Enter")
        expect(page.locator("#whoami")).to_contain_text("Signed in as rita", timeout=30_000)

        page.get_by_role("tab", name="Reports").click()
        runs = page.locator("#runs-list")
        expect(runs).to_contain_text("sweep/kl-6", timeout=30_000)
        expect(runs.locator("tr", has_text="smoke")).to_contain_text("passed")
        expect(runs.locator("tr", has_text="sweep/kl-6")).to_contain_text("failed")

        def pick(name: str):
            page.locator("#run-pick input").click()
            page.get_by_role("option", name=name, exact=True).click()
            frame = page.frame_locator("#run-report iframe")
            expect(frame.locator("#run-status")).to_be_visible(timeout=30_000)
            return frame

        frame = pick("smoke")
        for sid in SECTION_IDS:
            expect(frame.locator(f"section#{sid}")).to_have_count(1)
        expect(frame.locator("#run-status")).to_contain_text("passed")
        expect(page.locator("#report-note")).to_contain_text("report.html")
        assert page.locator("#run-report iframe").get_attribute("sandbox") == ""
        assert frame.locator("section#ppo img").evaluate("img => img.naturalWidth") > 0

        frame = pick("sweep/kl-6")
        expect(frame.locator("#run-status")).to_contain_text("failed")
        expect(frame.locator("section#overview .failure")).to_contain_text("FAILED by 0.25")
        expect(frame.locator("section#samples")).to_contain_text("<script>window.__pwned")
        assert page.evaluate("() => window.__pwned") is None
        page.screenshot(path=str(artifacts / "reports-tab.png"), full_page=True)
        page.close()
    finally:
        demo.close()


# ------------------------------------------------------------------------------------------ no gold
@pytest.fixture(scope="module")
def hh_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole pipeline on the ``hh`` world (real prompts and pairs, no gold reward) at smoke scale,
    as README's "bring your own data" runs it."""
    from conftest import run_cli

    run_dir = tmp_path_factory.mktemp("hh") / "run"
    result = run_cli("alignment.pipeline", "world=hh", "scale=smoke", "data.max_rows=64", f"run.dir={run_dir}",
                     timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_the_hh_pipeline_runs_on_real_data_and_reports_without_gold(hh_run: Path) -> None:
    report = json.loads((hh_run / "report.json").read_text())
    assert report["status"] == "passed" and [s["dir"] for s in report["stages"] if s["status"] != "not run"] == [
        "sft", "reward", "ppo"]
    h = report["headline"]
    assert h["gold"] is False and h["gold_win_rate"] is None and h["gold_reward_sft"] is None
    assert h["rm_score_sft"] is not None and h["rm_score_ppo"] is not None and h["final_kl"] is not None
    assert h["over_refusal_sft"] is not None and h["over_refusal_ppo"] is not None
    assert {m["figure"] for m in h["missing"]} >= {"gold reward, gold win rate, gold unsafe rate", "judge win rate"}
    ppo = json.loads((hh_run / "ppo" / "metrics.json").read_text())
    assert ppo["prompts"]["source"] == "hh" and ppo["prompts"]["gold"] is False
    assert all(source.split(":")[0].endswith("hh/train.jsonl.gz") for source in ppo["prompts_sampled"])
    reward = json.loads((hh_run / "reward" / "metrics.json").read_text())
    assert reward["data"]["source"] == "hh" and "minilm" in reward["reward_model_init"].lower()
    safety = json.loads((hh_run / "ppo" / "safety.json").read_text())
    assert safety["prompt_sets"] == {"redteam": "hh world redteam set", "benign": "hh world benign set",
                                     "xstest": "XSTest v2 (packaged): 1 of the 25 prompts of each type"}
    xstest = safety["policy"]["xstest"]
    assert safety["refusal_judge"] == "judge" and xstest["n"] == 18 and len(xstest["by_type"]) == 18
    assert xstest["safe"]["n"] == 10 and xstest["unsafe"]["n"] == 8 and "ci95" in xstest["safe"]["refusal"]
    html = (hh_run / "report.html").read_text()
    assert 'id="xstest"' in html and "all unsafe prompts" in html and "contrast_privacy" in html
    assert "Figures not available in this run" in html and "Gold win rate" not in html
    assert "Over-optimisation cannot be checked in this run" in html


@pytest.mark.slow
@pytest.mark.browser
def test_the_report_without_gold_renders_every_figure_it_draws(hh_run: Path, browser, artifacts: Path) -> None:
    from playwright.sync_api import expect

    page, seen = open_report(browser, hh_run / "report.html")
    expect(page.locator("#missing")).to_be_visible()
    images = page.evaluate("() => [...document.images].map(i => [i.alt, i.complete, i.naturalWidth])")
    assert len(images) >= 3 and all(complete and width > 0 for _, complete, width in images), images
    assert page.locator("section#ppo img").count() == 1
    page.screenshot(path=str(artifacts / "run-report-hh.png"), full_page=True)
    assert page.locator(".section-error").count() == 0 and seen["errors"] == []
    page.close()
