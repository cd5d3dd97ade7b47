"""The prompt sets of a run (``prompts=demo|hh|custom``), and the gold reward where the world has one.

Every stage that asks a policy something takes its prompts from here:

* ``train``: what candidates are sampled for and what PPO trains on;
* ``eval``: held-out prompts of the same kind (PPO's evaluation during and after training);
* ``redteam``: harmful requests (the safety filter's unsafe rate, the refusal rate);
* ``benign``: ordinary requests (the over-refusal rate).

With ``safety.eval.xstest`` (on by default for ``hh`` and ``custom``) an ``xstest`` set joins them:
XSTest's safe and unsafe contrast prompts (:mod:`alignment.data.xstest`), asked by every stage's safety
evaluation next to ``redteam`` and ``benign``.

``demo`` is the demo world (its ``train``, ``eval`` and ``redteam`` splits, and the benign part of
``eval``) and the only source with a gold reward. ``hh`` is the HH-RLHF world shipped in the package
(:mod:`alignment.data.hh_world`); any of its sets can be replaced by a file. ``custom`` reads the
user's files: ``train`` is required, ``eval`` defaults to a seeded ``eval_fraction`` of it (left out
of training), ``redteam`` and ``benign`` to the ``hh`` world's sets, which are real requests and
suit any chat policy.

:func:`fit_to_context` checks every prompt against the policy's context up front, so a prompt that
cannot fit fails the stage before it writes anything (or, with ``prompts.skip_long``, is left out and
counted).
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, field, replace

from alignment.config import Config, PromptsConfig, PromptSource, XSTestMode, require
from alignment.data.hh_world import hh_prompts
from alignment.data.prompts import PromptLike, check_prompt_lengths, load_prompts
from alignment.data.world import DemoWorld
from alignment.data.xstest import xstest_prompts
from alignment.errors import UserError

log = logging.getLogger(__name__)
SET_NAMES = ("train", "eval", "redteam", "benign")
HH_WHERE = "hh world {name} set"
#: The optional set of XSTest prompts, checked and asked along with ``redteam`` and ``benign``.
XSTEST = "xstest"


@dataclass
class PromptSets:
    """The four prompt sets, where each came from, and the demo world when it is the source (gold)."""

    source: PromptSource
    sets: dict[str, list[PromptLike]]
    where: dict[str, str]
    #: The demo world: answers have a gold reward. ``None`` for ``hh`` and ``custom``.
    gold: DemoWorld | None = None
    #: Prompts left out per set for being too long for the policy's context (``prompts.skip_long``).
    skipped_long: dict[str, int] = field(default_factory=dict)
    #: The sets shipped with the package (not the user's files): their too-long prompts are always left
    #: out, since the user cannot fix those rows.
    packaged: frozenset[str] = frozenset()

    def __getitem__(self, name: str) -> list[PromptLike]:
        return list(self.sets[name])

    def summary(self) -> dict:
        """What a stage records of its prompts: per set, where it came from, its size and a hash of
        its texts (two runs with equal hashes asked the same questions)."""
        return {"source": str(self.source), "gold": self.gold is not None, "sets": {
            name: {"where": self.where[name], "n": len(prompts), "skipped_long": self.skipped_long.get(name, 0),
                   "sha256": texts_sha256(prompts)} for name, prompts in self.sets.items()}}


def texts_sha256(prompts: list[PromptLike]) -> str:
    """A hash of the prompts' texts, in order."""
    digest = hashlib.sha256()
    for p in prompts:
        digest.update(p.text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _harmful(prompts: list[PromptLike]) -> list[PromptLike]:
    return [replace(p, kind="harmful") for p in prompts]


def _demo_sets(world: DemoWorld, cfg: PromptsConfig) -> tuple[dict, dict]:
    given = [name for name in SET_NAMES if getattr(cfg, name)]
    if given:
        raise UserError(f"prompts.{given[0]}={getattr(cfg, given[0])} is set, but prompts=demo uses the demo "
                        "world's own prompts (for your files use prompts=custom, or prompts=hh to replace one hh set)")
    sets = {"train": world.prompts("train"), "eval": world.prompts("eval"), "redteam": world.prompts("redteam"),
            "benign": world.prompts("eval", kind="benign")}
    where = {"train": "demo world train split", "eval": "demo world eval split",
             "redteam": "demo world redteam split", "benign": "demo world eval split (benign prompts)"}
    return sets, where


def _file_set(cfg: PromptsConfig, name: str) -> tuple[list[PromptLike], str]:
    path = getattr(cfg, name)
    return load_prompts(path, cfg.split), path


def _hh_sets(cfg: PromptsConfig) -> tuple[dict, dict]:
    sets, where = {}, {}
    for name in SET_NAMES:
        if getattr(cfg, name):
            sets[name], where[name] = _file_set(cfg, name)
        else:
            sets[name], where[name] = hh_prompts(name), HH_WHERE.format(name=name)
    return sets, where


def _custom_sets(cfg: PromptsConfig, seed: int) -> tuple[dict, dict]:
    require(cfg.train, "prompts.train", "prompts=custom needs prompts.train=PATH (a JSONL file of TRL prompt-only "
                                        "rows, a save_to_disk folder or a hub name)")
    sets, where = {}, {}
    sets["train"], where["train"] = _file_set(cfg, "train")
    if cfg.eval:
        sets["eval"], where["eval"] = _file_set(cfg, "eval")
    else:
        train = list(sets["train"])
        random.Random(f"prompts-eval/{seed}").shuffle(train)
        n_eval = max(1, round(len(train) * cfg.eval_fraction))
        if n_eval >= len(train):
            raise UserError(f"prompts.train={cfg.train}: {len(train)} prompt(s) cannot be split into training and "
                            "held-out prompts; give more, or a separate prompts.eval file")
        held = {id(p) for p in train[:n_eval]}
        sets["eval"] = train[:n_eval]
        sets["train"] = [p for p in sets["train"] if id(p) not in held]  # file order kept
        where["eval"] = f"{cfg.train} (held-out {cfg.eval_fraction:g}, seed {seed})"
    for name in ("redteam", "benign"):
        if getattr(cfg, name):
            sets[name], where[name] = _file_set(cfg, name)
        else:
            sets[name], where[name] = hh_prompts(name), HH_WHERE.format(name=name)
    return sets, where


def build_prompt_sets(cfg: Config) -> PromptSets:
    """The run's four prompt sets from ``cfg.prompts`` (module docstring); bad files raise :class:`UserError`."""
    p = cfg.prompts
    world = None
    if p.source == PromptSource.demo:
        world = DemoWorld(cfg.data.world_seed)
        sets, where = _demo_sets(world, p)
    elif p.source == PromptSource.hh:
        sets, where = _hh_sets(p)
    else:
        sets, where = _custom_sets(p, cfg.seed)
    if world is None:
        sets["redteam"] = _harmful(sets["redteam"])
    packaged = {name for name in SET_NAMES if world is not None or where[name] == HH_WHERE.format(name=name)}
    xstest = cfg.safety.eval.xstest
    if xstest == XSTestMode.on or (xstest == XSTestMode.auto and world is None):
        per_type = cfg.safety.eval.xstest_per_type
        sets[XSTEST] = xstest_prompts(per_type)
        where[XSTEST] = "XSTest v2 (packaged): " + ("all 450 prompts" if per_type is None else
                                                     f"{per_type} of the 25 prompts of each type")
        packaged.add(XSTEST)
    return PromptSets(p.source, sets, where, gold=world, packaged=frozenset(packaged))


def fit_to_context(prompt_sets: PromptSets, tokenizer, context: int | None, reserve: int, skip_long: bool,
                   names: tuple[str, ...] = SET_NAMES, reserve_key: str = "max_new_tokens",
                   max_tokens: int | None = None) -> PromptSets:
    """The sets ``names`` checked against a policy's ``context`` with ``reserve`` tokens kept for the answer,
    and against ``max_tokens`` (``prompts.max_tokens``) when set.

    A prompt that does not fit is a :class:`UserError` naming its file and row, unless ``skip_long`` or
    its set is one shipped with the package: then it is left out, counted in ``skipped_long`` and
    logged; a set left empty is still an error, and
    so is a ``reserve`` (the config key ``reserve_key``) that leaves no room for any prompt.
    ``context=None`` (a model without a fixed limit) checks only that the chat template accepts them.
    """
    limit = context if context is not None else 10**9
    if reserve >= limit:
        raise UserError(f"{reserve_key}={reserve} answer tokens exceed the policy's context of {limit} tokens, "
                        "leaving no room for any prompt")
    sets, skipped = dict(prompt_sets.sets), dict(prompt_sets.skipped_long)
    for name in names:
        kept, skip = [], skip_long or name in prompt_sets.packaged
        for prompt in sets[name]:
            try:
                check_prompt_lengths([prompt], tokenizer, limit, reserve, max_tokens)
            except UserError as err:
                if not skip or "chat template rejects" in str(err):
                    raise UserError(f"prompts.{name}: {err}"
                                    + ("" if skip_long else " (prompts.skip_long=true leaves such prompts out)")) from None
                continue
            kept.append(prompt)
        if len(kept) < len(sets[name]):
            skipped[name] = skipped.get(name, 0) + len(sets[name]) - len(kept)
            log.warning("prompts.%s: left out %d of %d prompts longer than the policy's context (%d tokens, %d kept "
                        "for the answer)%s", name, len(sets[name]) - len(kept), len(sets[name]), limit, reserve,
                        "" if max_tokens is None else f" or prompts.max_tokens={max_tokens}")
        if not kept:
            raise UserError(f"prompts.{name} ({prompt_sets.where[name]}): no prompt fits the policy's context of "
                            f"{limit} tokens with {reserve} kept for the answer"
                            + ("" if max_tokens is None else f" and prompts.max_tokens={max_tokens}"))
        sets[name] = kept
    return replace(prompt_sets, sets=sets, skipped_long=skipped)


def stage_prompt_sets(cfg: Config, tokenizer, model, stage: str, names: tuple[str, ...] = SET_NAMES) -> PromptSets:
    """The run's prompt sets checked against ``model``'s context with ``<stage>.generation.max_new_tokens``
    kept for the answers (the XSTest set too, when asked with the safety sets): what a stage calls before
    writing anything."""
    reserve = getattr(cfg, stage).generation.max_new_tokens
    prompt_sets = build_prompt_sets(cfg)
    if XSTEST in prompt_sets.sets and ("redteam" in names or "benign" in names):
        names = (*names, XSTEST)
    return fit_to_context(prompt_sets, tokenizer, getattr(model.config, "max_position_embeddings", None),
                          reserve, cfg.prompts.skip_long, names, f"{stage}.generation.max_new_tokens",
                          cfg.prompts.max_tokens)
