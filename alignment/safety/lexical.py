"""Lexical features for the ``fast`` backend (and the lexical half of ``default``), at bulk speed.

Three signals, all computed without a neural network:

* alt-profanity-check's probability, and its word TF-IDF vector reused as our word features (it is
  computed anyway for the probability, so word unigrams cost nothing extra);
* hashed character 3-5-grams, computed with numpy over the whole batch at once. scikit-learn's
  ``char_wb`` analyzer loops in Python per n-gram (~1,000 texts/s here), which alone would miss the
  5,000 texts/s target; the vectorised hash runs at tens of thousands of texts/s. Each occurrence is
  one entry of the CSR matrix (duplicates are summed by the matrix product), so no per-row sort is
  needed either. Rows are scaled by 1/sqrt(n-gram count), a stand-in for L2 normalisation that
  needs no aggregation and is identical at training and at scoring time;
* the category keyword rules of :mod:`alignment.safety.rules`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from alignment.safety.rules import rule_hits, split_words

log = logging.getLogger(__name__)

#: Bytes kept by the character n-gram hasher: ASCII letters/digits/apostrophe and all non-ASCII
#: (UTF-8) bytes; everything else becomes a space, and runs of spaces collapse to one.
_KEEP = np.full(256, 32, np.uint8)
for _c in b"abcdefghijklmnopqrstuvwxyz0123456789'":
    _KEEP[_c] = _c
_KEEP[128:] = np.arange(128, 256, dtype=np.uint8)

_MUL = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def char_ngrams(texts: list[str], ns: tuple[int, ...] = (3, 4, 5), bits: int = 18,
                max_chars: int = 2000) -> sparse.csr_matrix:
    """Hashed character n-gram occurrences ``[n, 2**bits]`` (CSR with duplicate entries).

    Each text is lowercased, cut to ``max_chars`` and padded with a space on both sides, so that
    n-grams at word edges (" kil", "ill ") are distinct from those inside words.
    """
    n_texts = len(texts)
    raw = [(" " + t[:max_chars].lower() + " ").encode("utf-8", "ignore") for t in texts]
    lengths = np.fromiter((len(b) for b in raw), np.int64, n_texts)
    arr = _KEEP[np.frombuffer(b"".join(raw), np.uint8)]
    row = np.repeat(np.arange(n_texts), lengths)
    space = arr == 32
    keep = np.ones(len(arr), bool)
    keep[1:] = ~(space[1:] & space[:-1])
    keep[np.concatenate([[0], np.cumsum(lengths)[:-1]])] = True  # a text's first byte always stays
    arr = arr[keep].astype(np.uint64)
    row = row[keep]
    lengths = np.bincount(row, minlength=n_texts)
    left = np.repeat(np.cumsum(lengths), lengths) - np.arange(len(arr))  # bytes from each position to its text's end
    wanted = sorted(set(ns))
    # one row per byte position, one column per n: boolean indexing reads it position by position, so
    # the n-grams come out grouped by text, in CSR order, with no sort
    hashes = np.empty((len(arr), len(wanted)), np.uint64)
    valid = np.empty((len(arr), len(wanted)), bool)
    h = np.zeros(len(arr), np.uint64)
    shift = np.uint64(64 - bits)
    with np.errstate(over="ignore"):
        for n in range(1, wanted[-1] + 1):
            nxt = np.zeros(len(arr), np.uint64)
            nxt[: len(arr) - n + 1] = arr[n - 1:]
            h = h * _MUL + nxt
            if n in wanted:
                j = wanted.index(n)
                hashes[:, j] = ((h + np.uint64(n)) * _MIX) >> shift
                valid[:, j] = left >= n
    col = hashes[valid].astype(np.int32)
    counts = sum(np.maximum(lengths - n + 1, 0) for n in wanted)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    data = np.ones(len(col), np.float32)
    return sparse.csr_matrix((data, col, indptr), shape=(n_texts, 1 << bits))


@dataclass
class LexicalBatch:
    """Lexical features of one batch."""

    #: ``[n, 2**bits]`` hashed char n-gram occurrences, scaled by 1/sqrt(occurrences in the row).
    chars: sparse.csr_matrix
    #: ``[n, profanity vocabulary]`` alt-profanity-check's word TF-IDF.
    words: sparse.csr_matrix
    #: ``[n]`` alt-profanity-check's probability.
    profanity: np.ndarray
    #: ``[n, len(CATEGORIES)]`` keyword rule hit counts.
    rules: np.ndarray

    def __len__(self) -> int:
        return len(self.profanity)

    def subset(self, idx: np.ndarray) -> LexicalBatch:
        return LexicalBatch(self.chars[idx], self.words[idx], self.profanity[idx], self.rules[idx])

    @staticmethod
    def concat(parts: list[LexicalBatch]) -> LexicalBatch:
        return LexicalBatch(sparse.vstack([p.chars for p in parts], format="csr"),
                            sparse.vstack([p.words for p in parts], format="csr"),
                            np.concatenate([p.profanity for p in parts]), np.concatenate([p.rules for p in parts]))


class LexicalFeaturizer:
    """Turns texts into :class:`LexicalBatch` (stateless: nothing here is trained).

    The profanity word TF-IDF is recomputed here with numpy from the package's own vocabulary and
    IDF (same word pattern, lowercase, L2 norm), from the word split the rules use too: splitting
    each text once instead of twice, and building the matrix without scikit-learn's per-token Python
    loop, halves the cost. ``tests/test_safety_filter.py`` checks it equals the package's vectorizer.
    """

    def __init__(self, ns: tuple[int, ...] = (3, 4, 5), bits: int = 18, max_chars: int = 2000) -> None:
        from profanity_check import profanity_check as pc  # loads two small joblib files, once

        self.ns, self.bits, self.max_chars = tuple(int(n) for n in ns), int(bits), int(max_chars)
        if not self.ns or min(self.ns) < 1 or not 8 <= self.bits <= 24:
            raise ValueError(f"bad char n-gram settings ns={self.ns} bits={self.bits}")
        self.vectorizer = pc.vectorizer
        self._profanity = pc.model
        self._vocab: dict[str, int] = dict(self.vectorizer.vocabulary_)
        self._idf = self.vectorizer.idf_.astype(np.float64)
        self.n_words = len(self._vocab)

    def settings(self) -> dict:
        return {"ns": list(self.ns), "bits": self.bits, "max_chars": self.max_chars, "n_words": self.n_words}

    def word_tfidf(self, words: list[list[str]]) -> sparse.csr_matrix:
        """alt-profanity-check's TF-IDF ``[n, vocabulary]`` from pre-split words."""
        get = self._vocab.get
        ids = [[i for i in map(get, ws) if i is not None] for ws in words]
        lengths = np.fromiter((len(x) for x in ids), np.int64, len(ids))
        flat = np.fromiter((i for x in ids for i in x), np.int64, int(lengths.sum()))
        rows = np.repeat(np.arange(len(ids)), lengths)
        keys, counts = np.unique(rows * self.n_words + flat, return_counts=True)
        r, c = np.divmod(keys, self.n_words)
        data = counts * self._idf[c]
        norms = np.sqrt(np.bincount(r, weights=data * data, minlength=len(ids)))
        data = data / norms[r]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=len(ids)))])
        return sparse.csr_matrix((data.astype(np.float32), c.astype(np.int32), indptr),
                                 shape=(len(ids), self.n_words))

    def __call__(self, texts: list[str]) -> LexicalBatch:
        words = split_words(texts)
        tfidf = self.word_tfidf(words)
        profanity = self._profanity.predict_proba(tfidf)[:, 1].astype(np.float32)
        chars = char_ngrams(texts, self.ns, self.bits, self.max_chars)
        per_row = np.diff(chars.indptr)
        chars.data = np.repeat((1.0 / np.sqrt(np.maximum(per_row, 1))).astype(np.float32), per_row)
        return LexicalBatch(chars, tfidf, profanity, rule_hits(texts, words))
