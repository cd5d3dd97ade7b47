"""``align-label`` (also ``python -m alignment.labeling``): the labeling app's commands
(:mod:`labeling_ui.cli`) on this project's Hydra config, ``conf/label.yaml``, with the pipeline's run
reports in the app's Reports tab.

The labeling app is a package of its own: it imports nothing of the pipeline's stages, reports or
models. This module is where the two meet: it composes the config (the same schema, overrides and
errors as every stage) and hands the app the renderer of the pipeline's reports.
"""

from __future__ import annotations

import sys
from typing import Any

from alignment.errors import UserError, config_error_line


def compose(overrides: list[str]) -> Any:
    """``conf/label.yaml`` with overrides, as the schema's dataclasses: a bad key, type or choice fails
    naming the key, and so does a value out of range (the sections' checks)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from alignment import CONF_DIR
    from alignment.config import register_configs

    register_configs()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="align-label"):
            cfg = hydra_compose(config_name="label", overrides=overrides)
        return OmegaConf.to_object(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(f"config error: {config_error_line(e)}") from None


def run_reports() -> Any:
    """The pipeline's reports for the Reports tab (imported when ``serve`` asks: the other sub-commands
    need not load the report code)."""
    from alignment.reports.run_report import RunReports
    return RunReports()


def main(argv: list[str] | None = None) -> int:
    from labeling_ui.cli import main as run_command
    return run_command(argv, compose, reports=run_reports)


if __name__ == "__main__":
    sys.exit(main())
