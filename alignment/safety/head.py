"""The trained part of the ``fast`` and ``default`` backends: small logistic models, stacked.

One output per column of :data:`SCORE_COLUMNS` (the categories, then ``any``). Base models:

* ``ngram``: logistic regression per output over the lexical n-gram features: the hashed char
  n-gram ``columns`` most frequent in the training texts, IDF-weighted (the IDF is folded into the
  weights), then alt-profanity-check's word TF-IDF. Keeping only frequent columns keeps the file
  small and the fit fast, and is decided *before* fitting, so training and scoring use one model;
* ``emb`` (``default`` only): logistic regression per output over frozen sentence features.

Combiners, fitted on *out-of-fold* base predictions (so they learn how far to trust each base model
on unseen text) and giving the calibrated probabilities the filter reports:

* per category, a logistic "stacker" over alt-profanity-check's probability, the base models'
  probabilities for that category and its rule hits: categories differ in what predicts them
  (profanity says much about harassment, nothing about self-harm), and a learnt combination won
  clearly over a fixed one in cross-validation on the moderation set;
* for ``any``, a fixed-weight blend of profanity, the base models' any-unsafe probabilities and their
  *strongest category* probabilities, then Platt scaling. The blend ranked better than a learnt
  stacker in cross-validation on the moderation set (with ~300 positives a learnt combiner overfits,
  and the category maxima carry what the any-model alone misses); the weights
  (:data:`FAST_ANY_WEIGHTS`, :data:`DEFAULT_ANY_WEIGHTS`) were chosen there.

The variants measured and not adopted, and the learning curve, are in ``docs/experiments.md``.

An output with too few labelled positives (``weapons`` and ``cybercrime`` when training on the
moderation data alone) is marked untrained; the filter then falls back to its rule score.
Arrays are plain numpy, so a head file (:mod:`alignment.safety.headfile`) holds no pickled code.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from alignment.errors import UserError
from alignment.safety.filter import ANY_INDEX, SCORE_COLUMNS
from alignment.safety.lexical import LexicalBatch
from alignment.safety.rules import rule_scores

log = logging.getLogger(__name__)
K = len(SCORE_COLUMNS)
#: Inputs of the any-unsafe blend, in order.
ANY_INPUTS = ("profanity", "ngram_any", "emb_any", "ngram_max_category", "emb_max_category")
FAST_ANY_WEIGHTS = (1.0, 1.0, 0.0, 1.0, 0.0)
DEFAULT_ANY_WEIGHTS = (1.0, 0.5, 2.0, 0.5, 2.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))


def quantize_int8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: ``weight ~= q * scale[:, None]`` (how head files store n-gram weights)."""
    scale = np.abs(weight).max(axis=1) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.round(weight / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def dequantize_int8(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * scale[:, None]


@dataclass
class Linear:
    """``K`` independent logistic models: ``sigmoid(X @ weight.T + bias)``; untrained outputs give NaN."""

    weight: np.ndarray  # [K, F]
    bias: np.ndarray  # [K]
    trained: np.ndarray  # [K] bool

    def proba(self, x: np.ndarray | sparse.spmatrix) -> np.ndarray:
        p = _sigmoid(np.asarray(x @ self.weight.T.astype(np.float32)) + self.bias[None, :])
        p[:, ~self.trained] = np.nan
        return p


def _fit_one(x: np.ndarray | sparse.spmatrix, y: np.ndarray, w: np.ndarray, c: float) -> LogisticRegression:
    model = LogisticRegression(C=c, max_iter=1000)
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y, sample_weight=w)


def fit_linear(x: np.ndarray | sparse.spmatrix, labels: np.ndarray, weights: np.ndarray, c: float,
               min_positives: int = 3, max_iter: int = 500) -> Linear:
    """One L2-regularised logistic regression per output, each on the rows whose label it knows.

    All outputs are fitted jointly by one L-BFGS run over the sum of their objectives (they share no
    parameters, so the optimum is each output's own, the same as scikit-learn's
    ``LogisticRegression(C=c)`` per output): every iteration then reads the feature matrix once for
    all outputs instead of once per output, several times faster on the wide sparse n-gram features.
    Each output's loss is divided by its total sample weight, as scikit-learn does, so one tolerance
    suits outputs with many and few labels alike.
    """
    from scipy.optimize import minimize

    known = ~np.isnan(labels)
    y = np.nan_to_num(labels, nan=0.0).astype(np.float64)
    pos, total = (y * known).sum(axis=0), known.sum(axis=0)
    trained = (pos >= min_positives) & (total - pos >= min_positives)
    ks = np.flatnonzero(trained)
    n_features = x.shape[1]
    weight = np.zeros((K, n_features), np.float32)
    bias = np.zeros(K, np.float32)
    if len(ks):
        m = known[:, ks] * np.asarray(weights, np.float64)[:, None]  # [n, k] sample weight, 0 if unknown
        scale = 1.0 / m.sum(axis=0)  # [k]
        yk = y[:, ks]
        xf = x.astype(np.float64) if sparse.issparse(x) else np.asarray(x, np.float64)
        xt = xf.T.tocsr() if sparse.issparse(xf) else xf.T
        k = len(ks)

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w = theta[: n_features * k].reshape(n_features, k)
            z = np.asarray(xf @ w) + theta[n_features * k:][None, :]
            loss = ((np.logaddexp(0.0, z) - yk * z) * m).sum(axis=0) * scale
            reg = 0.5 * (w * w).sum(axis=0) * scale / c
            g = m * (1.0 / (1.0 + np.exp(-z)) - yk) * scale[None, :]
            grad_w = np.asarray(xt @ g) + w * (scale / c)[None, :]
            return float(loss.sum() + reg.sum()), np.concatenate([grad_w.ravel(), g.sum(axis=0)])

        theta0 = np.zeros(n_features * k + k)
        # one BLAS thread: L-BFGS-B's many tiny vector ops run far slower with threads on a busy CPU
        with threadpool_limits(1, user_api="blas"):
            res = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                           options={"maxiter": max_iter, "gtol": 1e-4, "ftol": 1e-9})
        weight[ks] = res.x[: n_features * k].reshape(n_features, k).T
        bias[ks] = res.x[n_features * k:]
    return Linear(weight, bias, trained)


def out_of_fold(x: np.ndarray | sparse.spmatrix, labels: np.ndarray, weights: np.ndarray, c: float,
                folds: int, seed: int, min_positives: int) -> np.ndarray:
    """Base-model probabilities ``[n, K]`` for every row, each from a model that never saw that row."""
    out = np.full((x.shape[0], K), np.nan, np.float32)
    for train, held in KFold(folds, shuffle=True, random_state=seed).split(np.arange(x.shape[0])):
        out[held] = fit_linear(x[train], labels[train], weights[train], c, min_positives).proba(x[held])
    return out


def stack_inputs(lex: LexicalBatch, ngram_p: np.ndarray, emb_p: np.ndarray | None) -> np.ndarray:
    """Per-category stacker inputs ``[n, K, d]``: profanity, base probabilities, rule evidence.

    A base probability that is NaN (an output its model could not learn) enters as 0.5, "no opinion".
    """
    n = len(lex)
    rules = np.log1p(lex.rules)
    rule_k = np.concatenate([rules, rules.max(axis=1, keepdims=True)], axis=1)
    total = np.log1p(lex.rules.sum(axis=1))
    cols = [np.broadcast_to(lex.profanity[:, None], (n, K)), np.nan_to_num(ngram_p, nan=0.5), rule_k,
            np.broadcast_to(total[:, None], (n, K))]
    if emb_p is not None:
        cols.append(np.nan_to_num(emb_p, nan=0.5))
    return np.stack(cols, axis=-1).astype(np.float32)


def any_inputs(lex: LexicalBatch, ngram_p: np.ndarray, emb_p: np.ndarray | None) -> np.ndarray:
    """Inputs ``[n, len(ANY_INPUTS)]`` of the any-unsafe blend (absent parts are 0, weighted 0)."""
    n = len(lex)

    def max_category(p: np.ndarray) -> np.ndarray:
        return np.nan_to_num(p[:, :ANY_INDEX], nan=0.0).max(axis=1)

    emb_any = np.zeros(n) if emb_p is None else np.nan_to_num(emb_p[:, ANY_INDEX], nan=0.0)
    emb_max = np.zeros(n) if emb_p is None else max_category(emb_p)
    return np.stack([lex.profanity, np.nan_to_num(ngram_p[:, ANY_INDEX], nan=0.0), emb_any,
                     max_category(ngram_p), emb_max], axis=1).astype(np.float32)


@dataclass
class Stacker:
    """Per-category logistic models over :func:`stack_inputs`, and the any-unsafe blend.

    ``weight[ANY_INDEX]`` is unused; the any output is ``sigmoid(platt[0] * blend + platt[1])`` with
    ``blend = any_inputs @ any_weights / sum(any_weights)``.
    """

    weight: np.ndarray  # [K, d]
    bias: np.ndarray  # [K]
    trained: np.ndarray  # [K] bool
    any_weights: np.ndarray  # [len(ANY_INPUTS)]
    platt: np.ndarray  # [2]

    def blend(self, a: np.ndarray) -> np.ndarray:
        return a @ self.any_weights / self.any_weights.sum()

    def proba(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        p = _sigmoid(np.einsum("nkd,kd->nk", z, self.weight) + self.bias[None, :])
        p[:, ANY_INDEX] = _sigmoid(self.platt[0] * self.blend(a) + self.platt[1])
        p[:, ~self.trained] = np.nan
        return p


def fit_stacker(z: np.ndarray, a: np.ndarray, labels: np.ndarray, weights: np.ndarray, trained: np.ndarray,
                any_weights: tuple[float, ...], c: float = 1.0) -> Stacker:
    weight = np.zeros((K, z.shape[-1]), np.float32)
    bias = np.zeros(K, np.float32)
    for k in np.flatnonzero(trained[:ANY_INDEX]):
        known = ~np.isnan(labels[:, k])
        model = _fit_one(z[known, k], labels[known, k].astype(int), weights[known], c)
        weight[k], bias[k] = model.coef_[0], model.intercept_[0]
    stacker = Stacker(weight, bias, trained.copy(), np.asarray(any_weights, np.float32), np.zeros(2, np.float32))
    known = ~np.isnan(labels[:, ANY_INDEX])
    platt = _fit_one(stacker.blend(a[known])[:, None], labels[known, ANY_INDEX].astype(int), weights[known], 100.0)
    stacker.platt = np.array([platt.coef_[0, 0], platt.intercept_[0]], np.float32)
    return stacker


def finish(stacked: np.ndarray, lex: LexicalBatch) -> np.ndarray:
    """Final scores ``[n, K]``: the stacker's where trained, the rule fallback elsewhere."""
    fallback = rule_scores(np.concatenate([lex.rules, lex.rules.sum(axis=1, keepdims=True)], axis=1))
    return np.where(np.isnan(stacked), fallback, stacked).astype(np.float32)


@dataclass
class Head:
    """Everything a trained filter needs, plus a description of how it was made (``meta``)."""

    #: Indices of the hashed char n-gram columns the n-gram model uses.
    columns: np.ndarray
    #: Over ``[chars[:, columns], words]``, IDF folded into the char weights.
    ngram: Linear
    fast: Stacker
    emb: Linear | None = None
    default: Stacker | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.columns)
        # transposed, contiguous float32 blocks: these sparse products are the hot loop of ``fast``
        self._w_chars = np.ascontiguousarray(self.ngram.weight[:, :n].T, np.float32)
        self._w_words = np.ascontiguousarray(self.ngram.weight[:, n:].T, np.float32)

    @property
    def has_default(self) -> bool:
        return self.emb is not None and self.default is not None

    def ngram_proba(self, lex: LexicalBatch) -> np.ndarray:
        logits = np.asarray(lex.chars[:, self.columns] @ self._w_chars) + np.asarray(lex.words @ self._w_words)
        p = _sigmoid(logits + self.ngram.bias[None, :])
        p[:, ~self.ngram.trained] = np.nan
        return p

    def score_fast(self, lex: LexicalBatch) -> np.ndarray:
        ngram_p = self.ngram_proba(lex)
        return finish(self.fast.proba(stack_inputs(lex, ngram_p, None), any_inputs(lex, ngram_p, None)), lex)

    def score_default(self, lex: LexicalBatch, emb: np.ndarray) -> np.ndarray:
        if not self.has_default:
            raise ValueError("this head has no embedding part")
        ngram_p = self.ngram_proba(lex)
        emb_p = self.emb.proba(emb)
        z, a = stack_inputs(lex, ngram_p, emb_p), any_inputs(lex, ngram_p, emb_p)
        return finish(self.default.proba(z, a), lex)


def select_columns(x: sparse.csr_matrix, max_columns: int, min_df: int = 2) -> np.ndarray:
    """The ``max_columns`` columns present in the most rows (at least ``min_df``), sorted by index.

    ``x`` must have no duplicate entries (``sum_duplicates`` first).
    """
    df = np.bincount(x.indices, minlength=x.shape[1])
    candidates = np.flatnonzero(df >= min_df)
    if len(candidates) > max_columns:
        candidates = candidates[np.argsort(-df[candidates], kind="stable")[:max_columns]]
    return np.sort(candidates).astype(np.int64)


@dataclass
class TrainSettings:
    ngram_c: float = 10.0
    #: Stronger settings gain little AUPRC and start flagging the demo world's refusals as unsafe,
    #: which the pipeline's gates count on being safe (docs/experiments.md).
    emb_c: float = 1.0
    stack_c: float = 1.0
    max_columns: int = 30_000
    min_df: int = 2
    folds: int = 3
    min_positives: int = 3
    seed: int = 0


def train_head(lex: LexicalBatch, emb: np.ndarray | None, labels: np.ndarray, weights: np.ndarray,
               settings: TrainSettings | None = None, meta: dict | None = None) -> Head:
    """Fit the n-gram, embedding and combiner models on labelled features (see the module docstring)."""
    s = settings or TrainSettings()
    chars = lex.chars.copy()
    chars.sum_duplicates()
    columns = select_columns(chars, s.max_columns, s.min_df)
    df = np.bincount(chars[:, columns].indices, minlength=len(columns))
    idf = (np.log((1.0 + len(lex)) / (1.0 + df)) + 1.0).astype(np.float32)
    xs = sparse.hstack([lex.chars[:, columns] @ sparse.diags(idf), lex.words], format="csr", dtype=np.float64)
    xs.sum_duplicates()  # same matrix, fewer entries: each fit below passes over it a few dozen times
    log.info("n-gram model: %d rows, %d of %d char n-gram columns + %d words", xs.shape[0], len(columns),
             chars.shape[1], lex.words.shape[1])
    ngram = fit_linear(xs, labels, weights, s.ngram_c, s.min_positives)
    ngram_oof = out_of_fold(xs, labels, weights, s.ngram_c, s.folds, s.seed, s.min_positives)
    ngram.weight[:, : len(columns)] *= idf[None, :]  # fold the IDF in: the head scores raw features
    ngram.weight = dequantize_int8(*quantize_int8(ngram.weight))  # exactly what a head file stores
    trained = ngram.trained.copy()
    untrained = [SCORE_COLUMNS[k] for k in np.flatnonzero(~trained)]
    if not trained[ANY_INDEX]:
        raise UserError(f"cannot train a safety head: fewer than {s.min_positives} unsafe or safe rows")
    if untrained:
        log.warning("too few labelled positives for %s: those fall back to keyword rules", untrained)
    fast = fit_stacker(stack_inputs(lex, ngram_oof, None), any_inputs(lex, ngram_oof, None), labels, weights,
                       trained, FAST_ANY_WEIGHTS, s.stack_c)
    head = Head(columns, ngram, fast, meta=dict(meta or {}))
    if emb is not None:
        log.info("embedding model: %d rows, %d dims", emb.shape[0], emb.shape[1])
        head.emb = fit_linear(emb, labels, weights, s.emb_c, s.min_positives)
        emb_oof = out_of_fold(emb, labels, weights, s.emb_c, s.folds, s.seed, s.min_positives)
        head.default = fit_stacker(stack_inputs(lex, ngram_oof, emb_oof), any_inputs(lex, ngram_oof, emb_oof),
                                   labels, weights, trained & head.emb.trained, DEFAULT_ANY_WEIGHTS, s.stack_c)
    head.meta["trained"] = [SCORE_COLUMNS[k] for k in np.flatnonzero(trained)]
    return head
