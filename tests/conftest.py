"""Shared test fixtures: an isolated model cache, the shared data folder, a smoke SFT run, the demo world,
an empty label store, and PostgreSQL databases for the tests that run on both engines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignment.data.world import DemoWorld
from labeling_ui.pgserver import POSTGRES_URL_ENV, ThrowawayPostgres, create_database, postgres_bin
from labeling_ui.store import LabelStore

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


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
