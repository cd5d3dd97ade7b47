"""``align-safety-train``: train the head of the ``fast`` and ``default`` backends and write it to one file.

Examples::

    # the head shipped with the project (alignment/safety/assets/head.safetensors; scripts/setup.sh):
    align-safety-train --moderation --demo --refusals --out alignment/safety/assets/head.safetensors
    # lexical part only (seconds), on your own labelled JSONL:
    align-safety-train --data labels.jsonl --backends fast --out runs/safety/head.safetensors

Data: JSONL (or ``.jsonl.gz``) in the OpenAI-moderation layout (``{"prompt": text, "S": 0, "H": 1, ...}``,
a missing key is unknown; see :mod:`alignment.safety.data`); ``--moderation``: the OpenAI moderation
sample shipped in the package (the same file on every machine); ``--demo``: the demo world's own texts,
the only source of ``weapons`` and ``cybercrime`` labels; ``--refusals``: refusals as safe rows, so
the filter does not flag a policy for refusing. Point ``safety.head_path`` at the output to use it.
The file is written to a temporary name and renamed, so a crash never leaves half a head.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from dataclasses import asdict

import numpy as np

from alignment.errors import UserError
from alignment.safety.data import (
    DEMO_WEIGHT,
    PACKAGED_MODERATION,
    REFUSAL_WEIGHT,
    LabelledTexts,
    demo_labelled,
    load_moderation_jsonl,
    refusal_labelled,
)
from alignment.safety.head import Head, TrainSettings, train_head
from alignment.safety.headfile import save_head
from alignment.safety.lexical import LexicalBatch, LexicalFeaturizer

log = logging.getLogger("alignment.safety.train")


def make_encoder(path: str | None = None, layers: tuple[int, ...] = (4, 5, 6), max_length: int = 128,
                 quantize: bool = True, batch_size: int = 32, num_threads: int | None = None):
    """The sentence encoder of the ``default`` backend, without a cache (training sees each text once)."""
    from alignment.safety.encoder import SentenceEncoder

    return SentenceEncoder(path, layers, max_length, batch_size, quantize, num_threads, cache_size=0)


def featurize(texts: list[str], lexical: LexicalFeaturizer, encoder=None,
              desc: str = "texts") -> tuple[LexicalBatch, np.ndarray | None]:
    """Lexical features (and encoder features when ``encoder`` is given) of ``texts``."""
    log.info("featurising %d %s%s", len(texts), desc, " (lexical + encoder)" if encoder is not None else "")
    lex = lexical(texts)
    emb = encoder.encode(texts, progress=True) if encoder is not None else None
    return lex, emb


def train(data: LabelledTexts, lex: LexicalBatch, emb: np.ndarray | None, lexical: LexicalFeaturizer,
          encoder=None, settings: TrainSettings | None = None) -> Head:
    """A head with its provenance in ``meta`` (sources, sizes, settings, feature settings)."""
    settings = settings or TrainSettings()
    meta = {
        "lexical": lexical.settings(),
        "encoder": encoder.settings() if encoder is not None and emb is not None else None,
        "training": {"rows": len(data), "sources": dict(Counter(data.sources)), "positives": data.positives(),
                     "settings": asdict(settings)},
    }
    return train_head(lex, emb, data.labels, data.weights, settings, meta)


def _parse_layers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers expects comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="align-safety-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", action="append", default=[], metavar="FILE.jsonl",
                   help="labelled JSONL (OpenAI-moderation layout); repeatable")
    p.add_argument("--moderation", action="store_true",
                   help="add the OpenAI moderation sample shipped in the package (MIT, 1,000 texts)")
    p.add_argument("--demo", action="store_true", help="add the demo world's labelled texts")
    p.add_argument("--refusals", action="store_true",
                   help="add refusals (answers declining harmful requests) as safe texts")
    p.add_argument("--refusal-weight", type=float, default=REFUSAL_WEIGHT,
                   help=f"training weight of a refusal row (default {REFUSAL_WEIGHT})")
    p.add_argument("--demo-weight", type=float, default=DEMO_WEIGHT,
                   help=f"training weight of a demo row (default {DEMO_WEIGHT})")
    p.add_argument("--limit", type=int, default=None, help="read at most N rows of each --data file")
    p.add_argument("--out", required=True, help="the head file to write (safetensors)")
    p.add_argument("--backends", default="fast,default",
                   help="'fast' (lexical part only) or 'fast,default' (also the encoder part; default)")
    p.add_argument("--encoder", default=None, help="sentence encoder folder (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--layers", type=_parse_layers, default=(4, 5, 6), help="encoder layers pooled (default 4,5,6)")
    p.add_argument("--max-length", type=int, default=128, help="encoder token limit (default 128)")
    p.add_argument("--no-quantize", action="store_true", help="float32 encoder instead of dynamic int8")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-columns", type=int, default=TrainSettings.max_columns,
                   help="char n-gram columns kept (file size ~ 11 bytes each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        backends = {b.strip() for b in args.backends.split(",") if b.strip()}
        if not backends or not backends <= {"fast", "default"}:
            raise UserError(f"--backends={args.backends!r}: expected 'fast' or 'fast,default'")
        if not args.data and not (args.moderation or args.demo or args.refusals):
            raise UserError("no training data: give --data FILE.jsonl, --moderation, --demo and/or --refusals")
        for flag, weight in (("--demo-weight", args.demo_weight), ("--refusal-weight", args.refusal_weight)):
            if weight <= 0:
                raise UserError(f"{flag}={weight}: must be positive")
        paths = ([PACKAGED_MODERATION] if args.moderation else []) + args.data
        parts = [load_moderation_jsonl(path, args.limit) for path in paths]
        if args.demo:
            parts.append(demo_labelled(weight=args.demo_weight, seed=args.seed))
        if args.refusals:
            parts.append(refusal_labelled(weight=args.refusal_weight, seed=args.seed))
        data = LabelledTexts.concat(parts)
        log.info("training on %d texts from %s; positives %s", len(data), dict(Counter(data.sources)),
                 data.positives())
        start = time.perf_counter()
        lexical = LexicalFeaturizer()
        encoder = None
        if "default" in backends:
            encoder = make_encoder(args.encoder, args.layers, args.max_length, not args.no_quantize, args.batch_size)
        lex, emb = featurize(data.texts, lexical, encoder)
        settings = TrainSettings(max_columns=args.max_columns, seed=args.seed)
        head = train(data, lex, emb, lexical, encoder, settings)
        out = save_head(head, args.out)
    except UserError as err:
        log.error("%s", err)
        return 2
    log.info("wrote %s (%.0f KB) in %.0f s; trained outputs: %s", out, out.stat().st_size / 1024,
             time.perf_counter() - start, head.meta["trained"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
