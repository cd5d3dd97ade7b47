"""What every stage command shares: Hydra entry, typed config, clear errors, and its output folder.

A stage is a function ``body(cfg: Config) -> int`` (its exit status). :func:`stage_main` composes the
stage's entry config onto the typed schema (unknown keys, values of the wrong type and choices outside
their set fail right there: one line naming the key, exit status 2), converts it to dataclasses (whose
``__post_init__`` checks the ranges; a missing mandatory value fails too), and turns a
:class:`~alignment.errors.UserError` into one clear log line and exit status 2. Hydra itself is told to
write nothing (``conf/<stage>.yaml``); the stage saves its resolved config under ``<stage dir>/.hydra``
once its inputs have been checked, so a bad invocation leaves the run directory untouched.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException
from transformers.trainer_utils import get_last_checkpoint

from alignment import CONF_DIR
from alignment.config import Config, register_configs
from alignment.errors import UserError, config_error_line

log = logging.getLogger("alignment")

#: Exit status of a stage that was given bad input (nothing written).
EXIT_BAD_INPUT = 2
#: Exit status of a stage that stopped waiting for people (``annotators=human``): rerun to go on.
EXIT_WAITING = 4


def stage_dir(cfg: Config, stage: str) -> Path:
    return Path(cfg.run.dir) / stage


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_resolved_config(raw: DictConfig, out_dir: Path) -> None:
    """The stage's resolved config and command-line overrides, as Hydra would have written them."""
    from alignment.io import write_text_atomic

    hydra_dir = out_dir / ".hydra"
    write_text_atomic(hydra_dir / "config.yaml", OmegaConf.to_yaml(raw, resolve=True))
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    write_text_atomic(hydra_dir / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(overrides)))


def resume_or_clear(checkpoints: Path, resume: bool, latest: Callable[[Path], Path | None],
                    is_main_process: bool = True) -> Path | None:
    """The checkpoint to resume from (``latest(checkpoints)``) when ``resume``, else ``None``.

    Whenever nothing is resumed, the main process removes ``checkpoints``: a fresh start must not
    leave an older run's checkpoints for a later ``resume=true`` to pick up, nor a half-written one.
    """
    found = latest(checkpoints) if resume and checkpoints.is_dir() else None
    if resume and found is None:
        log.warning("resume=true but %s holds no checkpoint: starting from the beginning", checkpoints)
    if found is None and checkpoints.exists() and is_main_process:
        shutil.rmtree(checkpoints)
    if found is not None:
        log.info("resuming from %s", found)
    return found


def _last_trainer_checkpoint(checkpoints: Path) -> Path | None:
    last = get_last_checkpoint(str(checkpoints))
    return Path(last) if last else None


def checkpoint_to_resume(cfg: Config, out_dir: Path) -> str | None:
    """The last Trainer checkpoint under ``<stage>/checkpoints`` when ``resume=true`` (see :func:`resume_or_clear`)."""
    found = resume_or_clear(out_dir / "checkpoints", cfg.resume, _last_trainer_checkpoint)
    return str(found) if found is not None else None


_FULL_ERROR = "HYDRA_FULL_ERROR"
#: ``HYDRA_FULL_ERROR`` as it was before :func:`run_hydra` set it, while set there ([] otherwise).
_saved_full_error: list[str | None] = []


def run_hydra(hydra_main: Callable[[], None]) -> None:
    """Call a ``@hydra.main`` function; a config that does not compose is one error line and exit 2.

    Hydra reports a composition error (an unknown key, a value of the wrong type, a choice outside
    its set, a missing group option) over several lines and exits 1, unless ``HYDRA_FULL_ERROR=1``:
    then it re-raises. So that is set while Hydra composes (unless the user set it, asking for the
    stack trace), and the task function puts it back with :func:`config_composed` before the stage
    runs, so that the stage's own crashes keep Hydra's usual report.
    """
    if os.environ.get(_FULL_ERROR) == "1":
        hydra_main()
        return
    _saved_full_error.append(os.environ.get(_FULL_ERROR))
    os.environ[_FULL_ERROR] = "1"
    try:
        hydra_main()
    except (HydraException, OmegaConfBaseException) as err:
        if not _saved_full_error:  # raised by the task, after composing: not a config error
            raise
        print(f"config error: {config_error_line(err)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    finally:
        config_composed()


def config_composed() -> None:
    """The first call of a task function under :func:`run_hydra`: Hydra reports errors as usual again."""
    if _saved_full_error:
        previous = _saved_full_error.pop()
        if previous is None:
            os.environ.pop(_FULL_ERROR, None)
        else:
            os.environ[_FULL_ERROR] = previous


def stage_main(config_name: str, body: Callable[[Config, DictConfig], int]) -> Callable[[], None]:
    """A console-script entry point running ``body`` under Hydra with the ``conf/<config_name>.yaml``."""

    def main() -> None:
        register_configs()

        @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
        def _run(raw: DictConfig) -> None:
            config_composed()
            try:
                cfg = OmegaConf.to_object(raw)
                status = body(cfg, raw)
            except (UserError, MissingMandatoryValue) as err:
                log.error("%s", err)
                sys.exit(EXIT_BAD_INPUT)
            if status:
                sys.exit(status)

        run_hydra(_run)

    return main
