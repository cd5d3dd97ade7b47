"""Dependencies run one way: the reward model does not depend on PPO, the labeling app not on the pipeline
(the pipeline imports the app, never the reverse), product code not on test helpers, and only the plots
module draws."""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (``import a.b``, ``from a.b import c``), wherever the import stands."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def importers_of(prefix: str, files: list[Path]) -> list[str]:
    return sorted(str(f.relative_to(ROOT)) for f in files
                  if any(m == prefix or m.startswith(prefix + ".") for m in imported_modules(f)))


def test_the_reward_model_imports_nothing_from_ppo():
    reward_files = [*ROOT.glob("alignment/reward*.py"), *ROOT.glob("alignment/reward/**/*.py")]
    assert reward_files
    assert importers_of("alignment.ppo", reward_files) == []


def product_files(*packages: str) -> list[Path]:
    files = [f for package in packages for f in (ROOT / package).rglob("*.py")]
    assert files
    return files


def test_nothing_outside_the_tests_imports_the_test_helpers():
    helpers = {f.stem for f in (ROOT / "tests").glob("*.py")} | {"labeling_ui.testing"}
    assert {"label_app", "conftest"} <= helpers
    found = {str(f.relative_to(ROOT)): sorted(m for m in imported_modules(f)
                                              if m.split(".")[0] in helpers or m.startswith("labeling_ui.testing"))
             for f in product_files("alignment", "labeling_ui", "scripts")}
    assert {f: modules for f, modules in found.items() if modules} == {}
    assert not (ROOT / "labeling_ui" / "testing.py").exists() and not (ROOT / "labeling_ui" / "pgserver.py").exists()


def test_the_labeling_app_imports_from_the_pipeline_only_what_a_labeling_tool_needs():
    """Errors, safety categories, the demo world (for the bots) and the data formats it imports: nothing
    of the stages, reports, PPO or the reward model, so it installs and runs on its own; the Reports
    tab's renderer is handed in by the caller (``align-label``: :mod:`alignment.labeling`)."""
    app = product_files("labeling_ui")
    for forbidden in ("alignment.reports", "alignment.stages", "alignment.ppo", "alignment.reward",
                      "alignment.config", "alignment.labeling", "alignment.pipeline"):
        assert importers_of(forbidden, app) == [], forbidden
    used = {m for f in app for m in imported_modules(f) if m == "alignment" or m.startswith("alignment.")}
    allowed = {"alignment.errors", "alignment.safety.categories", "alignment.data.world", "alignment.data.loading",
               "alignment.data.preferences"}
    assert {m for m in used if not any(m == a or m.startswith(a + ".") for a in allowed)} == set()


def test_the_pipeline_imports_the_app_and_the_app_imports_no_hydra_or_torch():
    """The pipeline's modules the app uses load neither Hydra nor torch: the store, the queue, the
    import, export and the bots do not drag the pipeline's stack along (nor the command line, which is
    handed its config)."""
    code = ("import sys, labeling_ui.cli, labeling_ui.bots, labeling_ui.importer, labeling_ui.export, "
            "labeling_ui.queue; "
            "print(sorted(m for m in ('torch', 'transformers', 'hydra', 'alignment.config', 'alignment.reports') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
    assert importers_of("labeling_ui", product_files("alignment")) != []


def test_library_packages_do_not_import_the_stages():
    """Stages are entry points over the library; the library never reaches back into them."""
    library = [f for package in ("reward", "ppo", "safety", "data", "reports")
               for f in (ROOT / "alignment" / package).rglob("*.py")]
    assert importers_of("alignment.stages", library) == []



def test_only_the_plots_module_draws():
    """Figures are built on their own ``Figure`` objects in :mod:`alignment.reports.plots`; nothing goes
    through pyplot's global state (the labeling app renders reports from request threads)."""
    product = product_files("alignment", "labeling_ui", "scripts")
    assert importers_of("matplotlib.pyplot", product) == []
    assert importers_of("matplotlib", product) == ["alignment/reports/html.py", "alignment/reports/plots.py"]
