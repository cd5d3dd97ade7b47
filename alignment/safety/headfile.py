"""Saving and loading a trained :class:`~alignment.safety.head.Head` as one small safetensors file.

Why safetensors with JSON metadata and not joblib: a head file is loaded by path from a config, maybe
one somebody sent you, and unpickling runs arbitrary code; safetensors holds arrays only. The
settings the features depend on (n-gram hashing, encoder layers, max length, quantisation) travel in
the metadata, so a filter refuses a head trained on different features instead of scoring garbage.

The n-gram weights (the bulk of the file) are stored as int8 with one scale per output; training
already applies the same rounding (:func:`quantize_int8`), so the in-memory head a benchmark
evaluates is exactly the one written to disk. Writes go to a temporary file renamed into place.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from alignment.errors import UserError
from alignment.safety.filter import SCORE_COLUMNS
from alignment.safety.head import Head, Linear, Stacker, dequantize_int8, quantize_int8

FORMAT = "alignment-safety-head"
VERSION = 1
#: The head trained by the project and shipped with it (see ``align-safety-train --help``).
PACKAGED_HEAD = Path(__file__).resolve().parent / "assets" / "head.safetensors"


def _put(tensors: dict[str, np.ndarray], name: str, part: Linear | Stacker) -> None:
    tensors[f"{name}.weight"] = np.ascontiguousarray(part.weight, np.float32)
    tensors[f"{name}.bias"] = np.ascontiguousarray(part.bias, np.float32)
    tensors[f"{name}.trained"] = part.trained.astype(np.uint8)
    if isinstance(part, Stacker):
        tensors[f"{name}.any_weights"] = part.any_weights.astype(np.float32)
        tensors[f"{name}.platt"] = part.platt.astype(np.float32)


def save_head(head: Head, path: str | Path) -> Path:
    """Write ``head`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    q, scale = quantize_int8(head.ngram.weight)
    tensors = {"columns": head.columns.astype(np.int32), "ngram.weight_q": q, "ngram.scale": scale,
               "ngram.bias": head.ngram.bias.astype(np.float32),
               "ngram.trained": head.ngram.trained.astype(np.uint8)}
    _put(tensors, "fast", head.fast)
    if head.emb is not None and head.default is not None:
        _put(tensors, "emb", head.emb)
        _put(tensors, "default", head.default)
    meta = {**head.meta, "format": FORMAT, "version": VERSION, "outputs": list(SCORE_COLUMNS)}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"head": json.dumps(meta, sort_keys=True)})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make a shipped head unreadable to others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _get(f, name: str, cls: type) -> Linear | Stacker:
    args = [f.get_tensor(f"{name}.weight").astype(np.float32), f.get_tensor(f"{name}.bias").astype(np.float32),
            f.get_tensor(f"{name}.trained").astype(bool)]
    if cls is Stacker:
        args += [f.get_tensor(f"{name}.any_weights").astype(np.float32), f.get_tensor(f"{name}.platt")]
    return cls(*args)


def load_head(path: str | Path, where: str = "safety.head_path") -> Head:
    """Read a head file; :class:`UserError` naming ``where`` and the path when it is missing or foreign."""
    from safetensors import SafetensorError, safe_open

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{where}={str(path)!r}: no such file; train one with "
                        f"`align-safety-train --data FILE.jsonl --demo --out {path}`")
    try:
        with safe_open(str(path), framework="np") as f:
            meta = json.loads((f.metadata() or {}).get("head", "null"))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise UserError(f"{where}={str(path)!r}: not a safety head file (no {FORMAT!r} metadata)")
            if meta.get("version") != VERSION:
                raise UserError(f"{where}={str(path)!r}: head format version {meta.get('version')}, this code "
                                f"reads version {VERSION}; retrain it with align-safety-train")
            if meta.get("outputs") != list(SCORE_COLUMNS):
                raise UserError(f"{where}={str(path)!r}: trained for outputs {meta.get('outputs')}, "
                                f"expected {list(SCORE_COLUMNS)}; retrain it with align-safety-train")
            names = set(f.keys())
            weight = dequantize_int8(f.get_tensor("ngram.weight_q"), f.get_tensor("ngram.scale"))
            ngram = Linear(weight, f.get_tensor("ngram.bias").astype(np.float32),
                           f.get_tensor("ngram.trained").astype(bool))
            head = Head(f.get_tensor("columns").astype(np.int64), ngram, _get(f, "fast", Stacker), meta=meta)
            if "emb.weight" in names:
                head.emb = _get(f, "emb", Linear)
                head.default = _get(f, "default", Stacker)
    except (SafetensorError, OSError, json.JSONDecodeError, KeyError) as err:
        raise UserError(f"{where}={str(path)!r}: cannot read the head file ({err})") from err
    return head
