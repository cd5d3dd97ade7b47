"""A cheap reward model that knows what it does not know: an ensemble of small Bradley-Terry heads on
frozen features.

What :mod:`alignment.acquisition` asks which pairs are worth a label. Every (prompt, response) is read
once by a frozen sentence encoder (all-MiniLM-L6-v2 by default, the backbone of ``reward_model=minilm``)
as the two-segment input ``[CLS] prompt [SEP] response [SEP]``, the prompt cut from the left to fit
(:func:`alignment.reward.encoding.encode_reward_row`), mean-pooled over its last layers
(:class:`alignment.safety.encoder.SentenceEncoder`), and reduced to its leading principal components
(fitted on the pool, so every later text is projected alike). Each member is a reward head
``r(x) = w2 . relu(W1 x + b1)`` (or ``w . x`` with ``hidden=0``) trained with the Bradley-Terry loss
``-log sigmoid(r(chosen) - r(rejected))`` on its own bootstrap resample of the labelled pairs, from its
own random start. Members agree where the labels pin the answer down and disagree where they do not:
the random starts make them differ off the labelled data too, where bootstrap resamples of linear heads
all extrapolate alike (docs/experiments.md measures how often each finds the model's own mistakes).

A pair's uncertainty is the members' disagreement about who wins: the mutual information between the
outcome and the member (BALD, Houlsby et al. 2011), ``H(mean p) - mean H(p)`` with ``p = sigmoid(margin)``.
Unlike the entropy of the mean prediction it is low on a pair that every member calls a coin flip (two
answers of one style: annotators say "tie", a label that teaches nothing). A fit takes well under a
second on a few hundred pairs, so the model can be retrained every few labels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from alignment.config import EnsembleConfig

log = logging.getLogger(__name__)


class PairEncoder:
    """Frozen features of (prompt, response) texts, each text encoded once (a cache by text), then
    projected on the principal components :meth:`fit_projection` found."""

    def __init__(self, cfg: EnsembleConfig) -> None:
        from alignment.modeling import resolve_reward_backbone
        from alignment.safety.encoder import SentenceEncoder

        self.encoder = SentenceEncoder(resolve_reward_backbone(cfg.encoder), max_length=cfg.max_length,
                                       cache_size=0)
        self.max_length, self.dims = cfg.max_length, cfg.dims
        self._features: dict[tuple[str, str], np.ndarray] = {}
        self._projection: tuple[np.ndarray, np.ndarray, float] | None = None

    def _text(self, prompt: str, response: str) -> str:
        """The encoder's input as text: ``prompt [SEP] response``, the prompt cut from the left to fit."""
        from alignment.reward.encoding import decode, encode_reward_row

        tokenizer = self.encoder.tokenizer
        row, cut = encode_reward_row(prompt, response, tokenizer, self.max_length, "pair")
        if not cut:
            return f"{prompt} {tokenizer.sep_token} {response}"
        return decode(tokenizer, row["input_ids"][1:-1], skip_special_tokens=False)

    def add(self, keys: Sequence[tuple[str, str]], progress: bool = True) -> None:
        """Encode the (prompt, response) keys not encoded yet."""
        todo = list(dict.fromkeys(k for k in keys if k not in self._features))
        if todo:
            feats = self.encoder.encode([self._text(p, r) for p, r in todo], progress=progress)
            self._features.update(zip(todo, feats))

    def fit_projection(self) -> None:
        """Principal components of every feature encoded so far (the pool): what :meth:`features` returns
        from now on, scaled to unit mean squared norm. Deterministic: the same features, the same projection."""
        if not self.dims:
            return
        x = np.stack(list(self._features.values())).astype(np.float64)
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        basis = vt[:self.dims].T
        scale = float(np.sqrt((((x - mean) @ basis) ** 2).sum(axis=1).mean())) or 1.0
        self._projection = (mean, basis, scale)

    def features(self, keys: Sequence[tuple[str, str]]) -> np.ndarray:
        """``[len(keys), dim]`` features (projected once :meth:`fit_projection` ran), encoding what is missing."""
        self.add(keys)
        raw = np.stack([self._features[k] for k in keys]) if keys else np.zeros((0, self.encoder.dim), np.float32)
        if self._projection is None:
            return raw.astype(np.float32)
        mean, basis, scale = self._projection
        return ((raw - mean) @ basis / scale).astype(np.float32)

    def pairs(self, pairs: Sequence[tuple[str, str, str]]) -> tuple[np.ndarray, np.ndarray]:
        """Features of the first and of the second answer of each ``(prompt, first, second)``."""
        self.add([(p, r) for p, a, b in pairs for r in (a, b)])
        return self.features([(p, a) for p, a, _ in pairs]), self.features([(p, b) for p, _, b in pairs])

    def export(self) -> tuple[list[tuple[str, str]], np.ndarray]:
        """Every key encoded so far and its raw features (what the labels stage's re-ranking reloads)."""
        keys = list(self._features)
        return keys, np.stack([self._features[k] for k in keys]) if keys else np.zeros((0, self.encoder.dim))

    def load(self, keys: Sequence[tuple[str, str]], features: np.ndarray) -> None:
        self._features.update(zip(map(tuple, keys), features))


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


@dataclass
class Ensemble:
    """``members`` reward heads (see the module doc), as stacked tensors: ``w1 [m, d, h]``, ``b1 [m, 1, h]``,
    ``w2 [m, h, 1]`` (``w1 [m, d, 1]`` alone for linear heads)."""

    w1: torch.Tensor
    b1: torch.Tensor | None
    w2: torch.Tensor | None

    @classmethod
    def fit(cls, chosen: np.ndarray, rejected: np.ndarray, cfg: EnsembleConfig, seed: int) -> Ensemble:
        """Heads fitted on the labelled pairs (features of the chosen and of the rejected answers), each on
        its own bootstrap resample of them."""
        if len(chosen) == 0:
            raise ValueError("an ensemble needs at least one labelled pair")
        m, (n, d), h = cfg.members, chosen.shape, cfg.hidden
        gen = torch.Generator().manual_seed(int(seed))
        rows = torch.randint(0, n, (m, n), generator=gen)
        xa = torch.as_tensor(chosen, dtype=torch.float32)[rows]
        xb = torch.as_tensor(rejected, dtype=torch.float32)[rows]
        width = h or 1
        w1 = (torch.randn(m, d, width, generator=gen) / d ** 0.5).requires_grad_()
        params = [w1]
        b1 = w2 = None
        if h:
            b1 = torch.zeros(m, 1, h, requires_grad=True)
            w2 = (torch.randn(m, h, 1, generator=gen) / h ** 0.5).requires_grad_()
            params += [b1, w2]
        ens = cls(w1, b1, w2)
        optimizer = torch.optim.Adam(params, lr=cfg.lr)
        for _ in range(cfg.steps):
            margin = ens._reward(xa) - ens._reward(xb)
            penalty = sum(p.pow(2).sum() for p in (w1, w2) if p is not None) / m
            loss = torch.nn.functional.softplus(-margin).mean() + cfg.weight_decay * penalty
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        for p in params:
            p.requires_grad_(False)
        return ens

    def _reward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [m, n, d]`` -> rewards ``[m, n]``."""
        if self.w2 is None:
            return torch.bmm(x, self.w1).squeeze(-1)
        return torch.bmm(torch.relu(torch.bmm(x, self.w1) + self.b1), self.w2).squeeze(-1)

    @torch.no_grad()
    def rewards(self, features: np.ndarray) -> np.ndarray:
        """``[n, members]``: each member's reward of each text's features."""
        x = torch.as_tensor(features, dtype=torch.float32)
        return self._reward(x.unsqueeze(0).expand(self.w1.shape[0], -1, -1)).T.numpy().astype(np.float64)

    def margins(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """``[n, members]``: each member's reward margin of the first answer over the second."""
        return self.rewards(first) - self.rewards(second)

    def disagreement(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """BALD per pair: ``H(mean p) - mean H(p)`` over the members (0 when they all agree)."""
        p = 1.0 / (1.0 + np.exp(-self.margins(first, second)))
        return np.maximum(_entropy(p.mean(axis=1)) - _entropy(p).mean(axis=1), 0.0)

    def accuracy(self, better: np.ndarray, worse: np.ndarray) -> float:
        """Share of pairs whose ``better`` answer gets the higher mean reward."""
        return float((self.margins(better, worse).mean(axis=1) > 0).mean())


def fit_ensemble(encoder: PairEncoder, rows: Sequence[dict], cfg: EnsembleConfig, seed: int) -> Ensemble:
    """An :class:`Ensemble` on preference rows (``prompt``, ``chosen``, ``rejected``)."""
    chosen, rejected = encoder.pairs([(r["prompt"], r["chosen"], r["rejected"]) for r in rows])
    return Ensemble.fit(chosen, rejected, cfg, seed)
