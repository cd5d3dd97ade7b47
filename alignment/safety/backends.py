"""The offline backends (``fast``, ``default``) and the factory that picks a backend by name.

* ``fast``: lexical only (alt-profanity-check, keyword rules, the head's n-gram model). For bulk
  screening and the PPO safety penalty: thousands of texts per second on one core.
* ``default``: the same plus the head's classifier on frozen MiniLM features; better ranking at
  tens of texts per second on a CPU.

Both read one trained head file (:mod:`alignment.safety.headfile`); with none configured they use the
head shipped with the project, and without that they fall back, with a warning, to keyword rules and
alt-profanity-check alone (the design's "classifier ... when one has been trained").

Both score a response on its own and ignore ``prompts``: the moderation taxonomy labels a text by
itself, and a refusal quoting a harmful request must not inherit the request's score. The model
backends (``llama_guard``) read prompt and response together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from alignment.errors import UserError
from alignment.registry import Registry
from alignment.safety.filter import SCORE_COLUMNS, BaseFilter, resolve_thresholds
from alignment.safety.head import Head
from alignment.safety.headfile import PACKAGED_HEAD, load_head
from alignment.safety.lexical import LexicalBatch, LexicalFeaturizer
from alignment.safety.rules import rule_scores

log = logging.getLogger(__name__)

#: Builds a backend's filter from a :class:`~alignment.config.SafetyConfig` and the resolved thresholds.
BackendFactory = Callable[[Any, np.ndarray], BaseFilter]
#: The backends by name (``safety.backend``; :class:`alignment.config.SafetyBackend` lists the same
#: names for the schema).
BACKENDS: Registry[BackendFactory] = Registry("safety backend")
#: Texts featurised at a time (bounds memory; each chunk is one vectorised pass).
LEXICAL_CHUNK = 4096


def rules_only(lex: LexicalBatch) -> np.ndarray:
    """Scores without a trained head: rule scores per category, profanity for harassment and any."""
    cats = rule_scores(lex.rules)
    harassment = SCORE_COLUMNS.index("harassment")
    cats[:, harassment] = np.maximum(cats[:, harassment], lex.profanity)
    anyv = np.maximum(lex.profanity, cats.max(axis=1))
    return np.concatenate([cats, anyv[:, None]], axis=1)


def resolve_head(head_path: str | None) -> Head | None:
    """The configured head, else the packaged one, else ``None`` (rules only, with a warning)."""
    if head_path:
        return load_head(head_path)
    if PACKAGED_HEAD.is_file():
        return load_head(PACKAGED_HEAD, where="the packaged safety head")
    log.warning("no trained safety head (safety.head_path unset and %s missing): scoring with keyword "
                "rules and alt-profanity-check only; train one with align-safety-train", PACKAGED_HEAD)
    return None


def _lexical_for(head: Head | None) -> LexicalFeaturizer:
    if head is None:
        return LexicalFeaturizer()
    s = head.meta.get("lexical", {})
    lex = LexicalFeaturizer(tuple(s.get("ns", (3, 4, 5))), s.get("bits", 18), s.get("max_chars", 2000))
    if s.get("n_words", lex.n_words) != lex.n_words:
        raise UserError(f"the safety head was trained with alt-profanity-check's {s['n_words']}-word vocabulary, "
                        f"the installed one has {lex.n_words}; retrain it with align-safety-train")
    return lex


class FastFilter(BaseFilter):
    """``fast``: lexical features and the head's n-gram model and stacker."""

    name = "fast"

    def __init__(self, head: Head | None, thresholds: np.ndarray | None = None) -> None:
        super().__init__(thresholds)
        self.head = head
        self.lexical = _lexical_for(head)

    def _chunks(self, texts: list[str]) -> list[tuple[int, list[str]]]:
        return [(i, texts[i:i + LEXICAL_CHUNK]) for i in range(0, len(texts), LEXICAL_CHUNK)]

    def _score_all(self, texts: list[str], prompts: list[str] | None) -> np.ndarray:
        out = np.zeros((len(texts), len(SCORE_COLUMNS)), np.float32)
        chunks = self._chunks(texts)
        for start, chunk in tqdm(chunks, desc="safety (fast)", unit="chunk", disable=len(chunks) < 3, leave=False):
            lex = self.lexical(chunk)
            out[start:start + len(chunk)] = rules_only(lex) if self.head is None else self.head.score_fast(lex)
        return out


class DefaultFilter(FastFilter):
    """``default``: lexical features plus frozen sentence-encoder features, stacked by the head."""

    name = "default"
    #: Texts per chunk: the encoder sorts each chunk by length, so larger chunks pad less.
    chunk = 1024

    def __init__(self, head: Head | None, thresholds: np.ndarray | None = None, encoder_path: str | None = None,
                 batch_size: int = 32, max_length: int | None = None, num_threads: int | None = None,
                 cache_size: int = 4096) -> None:
        super().__init__(head, thresholds)
        self.encoder = None
        if head is None:
            return
        if not head.has_default:
            raise UserError("the safety head has no embedding part (trained with --backends fast); "
                            "use safety=fast or retrain with align-safety-train --backends fast,default")
        from alignment.safety.encoder import SentenceEncoder

        enc = head.meta.get("encoder") or {}
        trained_len = int(enc.get("max_length", 128))
        if max_length is not None and max_length != trained_len:
            log.warning("safety.max_length=%d but the head was trained at %d tokens: its features differ",
                        max_length, trained_len)
        self.encoder = SentenceEncoder(encoder_path, tuple(enc.get("layers", (4, 5, 6))), max_length or trained_len,
                                       batch_size, bool(enc.get("quantize", True)), num_threads, cache_size)
        if self.encoder.dim != head.emb.weight.shape[1]:
            raise UserError(f"the safety head expects {head.emb.weight.shape[1]} encoder features, "
                            f"{self.encoder.path} gives {self.encoder.dim}; set safety.encoder_path to the "
                            "encoder the head was trained with, or retrain it")

    def _chunks(self, texts: list[str]) -> list[tuple[int, list[str]]]:
        return [(i, texts[i:i + self.chunk]) for i in range(0, len(texts), self.chunk)]

    def _score_all(self, texts: list[str], prompts: list[str] | None) -> np.ndarray:
        if self.head is None or self.encoder is None:
            return super()._score_all(texts, prompts)
        out = np.zeros((len(texts), len(SCORE_COLUMNS)), np.float32)
        chunks = self._chunks(texts)
        for start, chunk in tqdm(chunks, desc="safety (default)", unit="chunk", disable=len(chunks) < 2,
                                 leave=False):
            lex = self.lexical(chunk)
            emb = self.encoder.encode(chunk, progress=len(chunks) < 2 and len(chunk) > 256)
            out[start:start + len(chunk)] = self.head.score_default(lex, emb)
        return out


@BACKENDS.register("fast")
def _fast(cfg, thresholds: np.ndarray) -> BaseFilter:
    return FastFilter(resolve_head(cfg.head_path), thresholds)


@BACKENDS.register("default")
def _default(cfg, thresholds: np.ndarray) -> BaseFilter:
    return DefaultFilter(resolve_head(cfg.head_path), thresholds, cfg.encoder_path, cfg.batch_size,
                         cfg.max_length, cfg.num_threads, cfg.cache_size)


@BACKENDS.register("classifier")
def _classifier(cfg, thresholds: np.ndarray) -> BaseFilter:
    from alignment.safety.hf_backends import ClassifierFilter  # transformers only when asked for

    return ClassifierFilter.from_config(cfg, thresholds)


@BACKENDS.register("llama_guard")
def _llama_guard(cfg, thresholds: np.ndarray) -> BaseFilter:
    from alignment.safety.hf_backends import LlamaGuardFilter

    return LlamaGuardFilter.from_config(cfg, thresholds)


def build_filter(cfg) -> BaseFilter:
    """The safety filter a :class:`~alignment.config.SafetyConfig` (dataclass or Hydra node) asks for."""
    return BACKENDS[cfg.backend](cfg, resolve_thresholds(cfg.threshold, dict(cfg.thresholds or {})))

