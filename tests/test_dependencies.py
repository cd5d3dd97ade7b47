"""Dependencies run one way: the reward model does not depend on PPO, product code not on test helpers."""

import ast
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


def test_nothing_outside_the_tests_imports_the_labeling_test_helpers():
    product = [f for package in ("alignment", "labeling_ui", "scripts") for f in (ROOT / package).rglob("*.py")]
    assert importers_of("labeling_ui.testing", product) == []


def test_library_packages_do_not_import_the_stages():
    """Stages are entry points over the library; the library never reaches back into them."""
    library = [f for package in ("reward", "ppo", "safety", "data", "reports")
               for f in (ROOT / "alignment" / package).rglob("*.py")]
    assert importers_of("alignment.stages", library) == []



def test_only_the_plots_module_draws():
    """Figures are built on their own ``Figure`` objects in :mod:`alignment.reports.plots`; nothing goes
    through pyplot's global state (the labeling app renders reports from request threads)."""
    product = [f for package in ("alignment", "labeling_ui", "scripts") for f in (ROOT / package).rglob("*.py")]
    assert importers_of("matplotlib.pyplot", product) == []
    assert importers_of("matplotlib", product) == ["alignment/reports/html.py", "alignment/reports/plots.py"]
