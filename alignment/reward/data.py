"""The preference pairs a reward model is trained and checked on, as prompt/chosen/rejected text.

Training and held-out pairs come from the demo world's simulated labels (``data=demo``), the HH-RLHF
pairs shipped in the package (``data=hh``) or from any source
:func:`alignment.data.loading.load_source` reads (``data=custom``); the safety check uses one
(refusal, unsafe answer) pair per demo red-team prompt and a sample of the held-out HH-RLHF harmless
pairs shipped in the package.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
from datasets import Dataset

from alignment.config import Config, require
from alignment.data.hh_world import hh_pairs, hh_pairs_path
from alignment.data.loading import load_source, read_jsonl_numbered, row_location
from alignment.data.preferences import demo_preferences, normalise_row
from alignment.data.world import DemoWorld
from alignment.errors import UserError

log = logging.getLogger(__name__)


def load_preference_rows(cfg: Config) -> tuple[list[dict], list[dict], dict]:
    """``(train rows, eval rows, info)`` as prompt/chosen/rejected text with a margin."""
    d = cfg.data
    if d.source == "demo":
        world = DemoWorld(d.world_seed)
        kwargs = dict(noise=d.noise, position_bias=d.position_bias, seed=cfg.seed)
        try:
            train = demo_preferences(world, "train", d.pairs_per_prompt, **kwargs)
            held = demo_preferences(world, "eval", 1, **kwargs)
        except ValueError as err:
            raise UserError(f"data: {err}") from err
        for row in train + held:
            row["margin"] = cfg.reward.margin_scale * (row["strength"] - 1) / 3
        info = {"source": "demo", "noise": d.noise,
                "label_gold_agreement_eval": float(np.mean([r["gold_chosen_better"] for r in held]))}
    elif d.source == "hh":
        # a handful of the real pairs have an empty answer or two equal ones: left out, and counted
        train, skipped = _normalise_all(Dataset.from_list(hh_pairs("train")), str(hh_pairs_path("train")), True)
        held, skipped_held = _normalise_all(Dataset.from_list(hh_pairs("eval")), str(hh_pairs_path("eval")), True)
        for row in train + held:
            row["margin"] = cfg.reward.margin_scale * row["margin"]
        info = {"source": "hh", "skipped_invalid": skipped + skipped_held}
    else:
        source = require(d.source, "data.source", "data=custom needs data.source=PATH_OR_HUB_NAME")
        train_ds, held_ds, where = load_source(source, d.train_split)
        train, skipped = _normalise_all(train_ds, where, d.skip_invalid)
        if d.eval_source:
            held_ds, _, eval_where = load_source(d.eval_source, d.train_split)
            where = f"{where} (eval: {eval_where})"
        held, skipped_held = _normalise_all(held_ds, where, d.skip_invalid) if held_ds is not None else ([], 0)
        if held_ds is None:
            random.Random(cfg.seed).shuffle(train)
            n_eval = max(1, round(len(train) * d.eval_fraction))
            train, held = train[n_eval:], train[:n_eval]
        for row in train + held:
            row["margin"] = cfg.reward.margin_scale * row["margin"]
        info = {"source": where, "skipped_invalid": skipped + skipped_held}
    if d.max_rows:
        train = train[:d.max_rows]
    if not train or not held:
        raise UserError(f"data.source={d.source}: {len(train)} training and {len(held)} eval pairs; both must be non-empty")
    return train, held, info


def _normalise_all(ds: Dataset, where: str, skip_invalid: bool) -> tuple[list[dict], int]:
    if len(ds) == 0:
        raise UserError(f"{where}: the dataset is empty")
    rows, skipped = [], 0
    for i, row in enumerate(ds):
        try:
            rows.append(normalise_row(row, row_location(where, row, i)))
        except UserError as err:
            if not skip_invalid:
                raise UserError(f"{err} (set data.skip_invalid=true to skip such rows)") from err
            skipped += 1
            log.warning("skipping %s", err)
    return rows, skipped


def demo_safety_pairs(world: DemoWorld, seed: int) -> list[dict]:
    """One (refusal, unsafe answer) pair per red-team prompt, alternating toxic and compliant answers."""
    rng = random.Random(f"rm-safety/{seed}")
    rows = []
    for i, prompt in enumerate(world.prompts("redteam")):
        unsafe = ("harmful_compliance", "toxic")[i % 2]
        rows.append({"prompt": prompt.text, "chosen": world.respond(prompt, "refusal", rng),
                     "rejected": world.respond(prompt, unsafe, rng), "margin": 0.0})
    return rows


def hh_safety_pairs(cfg: Config) -> tuple[list[dict], str | None]:
    """Up to ``reward.hh_safety_pairs`` HH-RLHF harmless pairs (``auto``: the held-out ones shipped in
    the package) on which the reward model should prefer the less harmful answer."""
    path = cfg.reward.hh_safety_path
    if path is None:
        return [], None
    path = hh_pairs_path("eval") if path == "auto" else Path(path)
    if not path.is_file():
        raise UserError(f"reward.hh_safety_path={path}: no such file")
    rows = []
    for lineno, row in read_jsonl_numbered(path):
        try:
            rows.append(normalise_row(row, f"{path}:{lineno}"))
        except UserError:
            continue  # a handful of real pairs are empty or identical: not usable for this check
        if len(rows) >= cfg.reward.hh_safety_pairs:
            break
    return rows, str(path)
