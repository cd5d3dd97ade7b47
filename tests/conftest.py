"""Shared test fixtures: an isolated model cache, the shared data folder, a smoke SFT run and reward model,
the demo world, an empty label store, PostgreSQL databases for the tests that run on both engines, and
headless Chromium for the browser tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "scripts"))       # pgserver: the throwaway PostgreSQL the bench starts too

from alignment.data.world import DemoWorld  # noqa: E402
from labeling_ui.store import LabelStore  # noqa: E402
from pgserver import POSTGRES_URL_ENV, ThrowawayPostgres, create_database, postgres_bin  # noqa: E402

#: Debian's Chromium, and how the browser tests start it (headless, no network of its own).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny models built by tests go to a fresh cache, never the user's ~/.cache."""
    cache = tmp_path_factory.mktemp("model-cache")
    os.environ["ALIGNMENT_CACHE"] = str(cache)
    return cache


def shared_data(relative: str) -> Path:
    """A file of ../shared/data; skips the test when absent, except under CI where it must exist."""
    path = SHARED_DATA / relative
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing, and CI=true requires the shared data")
        pytest.skip(f"{path} is not present (the shared data folder sits beside the project)")
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args...`` the way a user would, capturing its output."""
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd or ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HYDRA_FULL_ERROR": "0"})


@pytest.fixture(scope="session")
def smoke_sft(tmp_path_factory: pytest.TempPathFactory, isolated_cache: Path) -> Path:
    """One smoke SFT run shared by the tests that need a trained policy: returns the run dir."""
    run_dir = tmp_path_factory.mktemp("run-smoke")
    result = run_cli("alignment.stages.sft", "scale=smoke", f"run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def smoke_rm(smoke_sft: Path) -> Path:
    """The smoke SFT run with a smoke reward model trained in it (``reward/model``): returns the run dir."""
    if not (smoke_sft / "reward" / "model").is_dir():
        result = run_cli("alignment.stages.reward", "scale=smoke", f"run.dir={smoke_sft}")
        assert result.returncode == 0, result.stderr[-2000:]
    return smoke_sft


def browser_available() -> None:
    """Skip (fail under CI=true) when Playwright or Chromium is missing."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        reason = "the playwright Python package is not installed (pip install playwright)"
    else:
        if Path(CHROMIUM).exists() or shutil.which("chromium"):
            return
        reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot be skipped under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Playwright, for one test module."""
    browser_available()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests leave their screenshots: $TEST_ARTIFACTS, else a temporary folder."""
    folder = Path(os.environ.get("TEST_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def world() -> DemoWorld:
    return DemoWorld(0)


@pytest.fixture
def store(tmp_path: Path) -> LabelStore:
    """An empty label store in a fresh database."""
    s = LabelStore(tmp_path / "labels.db")
    yield s
    s.close()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """A PostgreSQL server to create test databases on: $LABEL_TEST_POSTGRES_URL (CI starts one), else a
    throwaway cluster for this session. Skipped only where PostgreSQL is not installed, never under CI=true."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        yield url
        return
    if postgres_bin() is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL tests cannot be skipped under CI=true: set {POSTGRES_URL_ENV} or install postgresql")
        pytest.skip("PostgreSQL is not installed (no initdb): the PostgreSQL variants of the tests skip")
    server = ThrowawayPostgres(durable=False).start()
    yield server.url
    server.stop()


@pytest.fixture
def pg_url(postgres_server: str) -> str:
    """A new, empty PostgreSQL database."""
    return create_database(postgres_server)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty labeling database on each engine in turn: a SQLite path, a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "labels.db")
    return request.getfixturevalue("pg_url")
