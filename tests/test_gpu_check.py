"""``scripts/gpu_check.sh`` runs where a GPU is lent, so what can be checked here is: its worker
(``scripts/gpu_worker.py``) imports everything it uses from the project, the script and the worker name the
same paths, a machine without a GPU gets one line per path saying so, and the path that also runs on a CPU
(the end-of-turn stop) prints the line the script passes on."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

WORKER = ROOT / "scripts" / "gpu_worker.py"


@pytest.fixture(scope="module")
def worker():
    """The worker imported as a module: every name it imports (the project's included) must exist."""
    spec = importlib.util.spec_from_file_location("gpu_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_and_the_worker_check_the_same_paths(worker):
    script = (ROOT / "scripts" / "gpu_check.sh").read_text()
    listed = re.search(r'^PATHS="([^"]+)"', script, re.MULTILINE).group(1).split()
    assert listed == worker.PATHS
    assert {"ppo-zero3-lora", "dpo-bf16", "grpo-bf16", "rloo-bf16", "stop-end-of-turn"} <= set(listed)


@pytest.mark.slow
def test_the_end_of_turn_path_runs_on_this_machine_too(worker, tmp_path):
    result = subprocess.run([sys.executable, str(WORKER), "stop", str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env=os.environ.copy())
    assert result.returncode == 0, result.stderr[-2000:]
    line = json.loads(result.stdout.split("GPU_CHECK ", 1)[1])
    assert line["path"] == "stop-end-of-turn" and line["ok"] and line["styles"] == {"qwen2.5": True, "llama3": True}
    assert set(worker.FIELDS) <= set(line)


@pytest.mark.slow
def test_without_a_gpu_every_path_gets_one_line_saying_so(worker, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the check runs for real")
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "GPU_CHECK_DIR": str(tmp_path)})
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["path"] for line in lines] == worker.PATHS
    assert all(line["error"] == "no CUDA device" and not line["ok"] and set(worker.FIELDS) <= set(line) for line in lines)
