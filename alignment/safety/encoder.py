"""Frozen sentence features from all-MiniLM-L6-v2 (or any BERT-style encoder folder), fast on a CPU.

What makes it fast enough for the ``default`` backend's throughput target on 2 cores
(docs/benchmarks.md) on texts like the OpenAI moderation sample's (short on the whole, a long tail past
512 tokens):

* texts are tokenised once, sorted by length and batched, so a batch pads to its own longest text
  rather than to ``max_length``;
* only the layers the features need are run: the features are the mean-pooled hidden states of a
  few layers (concatenated), and layers above the highest one are dropped from the model;
* dynamic int8 quantisation of the Linear layers (``quantize``), with per-channel weight scales:
  faster than float32 with features close to float32's (per-tensor scales drift further and lose
  AUPRC; docs/experiments.md). Dynamic quantisation picks one activation scale per *input tensor*, so
  in a padded batch a text's features would depend on its batch-mates, enough to flip verdicts
  between batch sizes. :class:`PerTextLinear` calls
  each quantised Linear text by text on its real tokens only: features depend on the text alone, at
  the same speed. A head must be trained on the kind of features it scores, so the head file
  records these settings and the default backend builds its encoder from them;
* batches run on as many Python threads as torch has intra-op threads, each with one intra-op thread
  for the duration of the call (:func:`single_threaded_ops`): a quantised Linear called text by text
  is a stream of tiny matrix products, and splitting each across two threads costs more in waking
  them than it saves; on a shared machine it made encoding several times slower than one thread
  (docs/experiments.md). Features are per text, so they do not depend on how batches are shared out;
* a small LRU cache by text: the pipeline scores the same templated texts again and again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from alignment.errors import UserError

log = logging.getLogger(__name__)


class _Lengths(threading.local):
    """Token counts of the batch being encoded, shared by every :class:`PerTextLinear` of a model
    (per thread: each worker thread encodes its own batch)."""

    value: list[int] | None = None


@contextlib.contextmanager
def single_threaded_ops() -> Iterator[int]:
    """Torch's intra-op threads set to one for the block; yields how many there were (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield before
    finally:
        torch.set_num_threads(before)


class PerTextLinear(torch.nn.Module):
    """A dynamically quantised Linear applied to each text's real tokens separately (see the module doc).

    Padded positions get zeros; attention masks keep them out of every real token's output.
    """

    def __init__(self, linear: torch.nn.Module, lengths: _Lengths) -> None:
        super().__init__()
        self.linear = linear
        self.lengths = lengths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lengths = self.lengths.value
        if lengths is None or x.dim() != 3:
            return self.linear(x)
        out = x.new_zeros(x.shape[0], x.shape[1], self.linear.out_features)
        for row, n in enumerate(lengths):
            out[row, :n] = self.linear(x[row, :n])
        return out


def quantize_per_text(model: torch.nn.Module, lengths: _Lengths) -> torch.nn.Module:
    """Dynamic int8 (per-channel weights) for every Linear, each wrapped in :class:`PerTextLinear`."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices; the API still works
        model = quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig})
    quantized = torch.ao.nn.quantized.dynamic.Linear
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, quantized):
                setattr(parent, name, PerTextLinear(child, lengths))
    return model


class SentenceEncoder:
    """Mean-pooled hidden states of ``layers`` (0 = embeddings), each L2-normalised, concatenated."""

    def __init__(self, path: str | None = None, layers: tuple[int, ...] = (4, 5, 6), max_length: int = 128,
                 batch_size: int = 32, quantize: bool = True, num_threads: int | None = None,
                 cache_size: int = 4096) -> None:
        from transformers import AutoModel, AutoTokenizer

        from alignment.modeling import minilm_path

        self.path = path or minilm_path()
        if not layers or min(layers) < 0:
            raise UserError(f"safety.encoder.layers={list(layers)}: give hidden-state indices >= 0")
        if max_length < 8 or batch_size < 1:
            raise UserError(f"safety.max_length={max_length} / safety.batch_size={batch_size}: too small")
        if num_threads:
            torch.set_num_threads(int(num_threads))
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            model = AutoModel.from_pretrained(self.path, dtype=torch.float32)
        except OSError as err:
            raise UserError(f"cannot load a sentence encoder from {self.path!r}: {err}") from err
        n_layers = model.config.num_hidden_layers
        if max(layers) > n_layers:
            raise UserError(f"safety.encoder.layers={list(layers)}: {self.path} has only {n_layers} layers")
        self.layers = tuple(int(i) for i in layers)
        if hasattr(model, "encoder") and hasattr(model.encoder, "layer"):
            model.encoder.layer = model.encoder.layer[: max(max(self.layers), 1)]
        model.eval()
        self._lengths = _Lengths()
        if quantize:
            model = quantize_per_text(model, self._lengths)
        self.model = model
        self.quantize = bool(quantize)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.hidden = int(model.config.hidden_size)
        self.dim = self.hidden * len(self.layers)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = int(cache_size)

    def settings(self) -> dict:
        """What a head trained on these features depends on (stored in the head file)."""
        return {"layers": list(self.layers), "max_length": self.max_length, "quantize": self.quantize,
                "quantize_scheme": "int8-dynamic-per-text" if self.quantize else None,
                "hidden": self.hidden, "model": Path(self.path).name}

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Features ``[n, dim]`` (float32)."""
        out = np.zeros((len(texts), self.dim), np.float32)
        todo = []
        for i, text in enumerate(texts):
            hit = self._cache.get(text)
            if hit is None:
                todo.append(i)
            else:
                self._cache.move_to_end(text)
                out[i] = hit
        if todo:
            fresh = self._encode([texts[i] for i in todo], progress)
            out[todo] = fresh
            if self._cache_size > 0:
                for i, vec in zip(todo, fresh):
                    self._cache[texts[i]] = vec
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out

    def _encode(self, texts: list[str], progress: bool) -> np.ndarray:
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=False)
        ids = enc["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")[::-1]  # longest first: memory peaks early
        out = np.zeros((len(texts), self.dim), np.float32)
        batches = [order[start:start + self.batch_size] for start in range(0, len(texts), self.batch_size)]
        bar = tqdm(total=len(batches), desc="encoding", unit="batch", disable=not progress or len(batches) < 2,
                   leave=False)

        def run(idx: np.ndarray) -> None:
            out[idx] = self._encode_batch([ids[i] for i in idx])
            bar.update()

        with single_threaded_ops() as threads:
            if threads <= 1 or len(batches) < 2:
                for idx in batches:
                    run(idx)
            else:
                with ThreadPoolExecutor(min(threads, len(batches))) as pool:
                    list(pool.map(run, batches))
        bar.close()
        return out

    @torch.inference_mode()
    def _encode_batch(self, ids: list[list[int]]) -> np.ndarray:
        """Features of one batch of token ids (padded to its longest)."""
        pad = self.tokenizer.pad_token_id or 0
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for r, x in enumerate(ids):
            input_ids[r, : len(x)] = torch.tensor(x)
            mask[r, : len(x)] = 1
        self._lengths.value = [len(x) for x in ids]
        try:
            hidden = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states
        finally:
            self._lengths.value = None
        m = mask.unsqueeze(-1).float()
        feats = []
        for layer in self.layers:
            pooled = (hidden[layer] * m).sum(1) / m.sum(1).clamp(min=1.0)
            feats.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(feats, dim=-1).numpy()
