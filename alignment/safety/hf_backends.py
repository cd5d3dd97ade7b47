"""Model backends by local path: a text-classification model, or a Llama-Guard-style chat model.

* ``classifier``: any ``AutoModelForSequenceClassification`` folder. Its labels are mapped onto our
  categories by ``safety.classifier.label_map`` (or by name, when they already are category names or
  moderation codes); the any-unsafe score is ``1 - P(safe labels)`` for a softmax model with a safe
  label, else the highest mapped probability.
* ``llama_guard``: a chat model that answers ``safe`` or ``unsafe`` followed by category codes
  (Llama Guard 1-3 and look-alikes). The prompt and the response go in as a user/assistant chat
  through the model's own chat template (which carries its policy text). The unsafe probability is
  read from the logits of the first non-blank generated token, restricted to the "safe" and "unsafe"
  tokens: a graded score, which a gate and a PPO penalty need, rather than the bare decoded word.
  Category scores are that probability for the categories whose codes the model wrote.

Nothing here ever loads by hub name: ``path`` must be a local folder (the project runs offline).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from alignment.errors import UserError
from alignment.safety.categories import CATEGORIES, MODERATION_CODES
from alignment.safety.filter import ANY_INDEX, SCORE_COLUMNS, BaseFilter

log = logging.getLogger(__name__)

#: Llama Guard 3's hazard codes -> our categories (codes with no counterpart are ignored).
LLAMA_GUARD3_CODES: dict[str, str] = {
    "S1": "violence",  # violent crimes
    "S2": "cybercrime",  # non-violent crimes (fraud, hacking, ...)
    "S3": "sexual",  # sex-related crimes
    "S4": "sexual/minors",  # child sexual exploitation
    "S5": "harassment",  # defamation
    "S6": "ignore",  # specialized advice
    "S7": "harassment",  # privacy
    "S8": "ignore",  # intellectual property
    "S9": "weapons",  # indiscriminate weapons
    "S10": "hate",
    "S11": "self-harm",
    "S12": "sexual",  # sexual content
    "S13": "ignore",  # elections
    "S14": "cybercrime",  # code interpreter abuse
}
_ANY_LABELS = {"toxic", "toxicity", "unsafe", "harmful", "offensive", "flagged", "nsfw", "abusive"}
_SAFE_LABELS = {"safe", "non-toxic", "non_toxic", "not_toxic", "nontoxic", "neutral", "ok", "benign", "normal",
                "none", "clean", "not_offensive", "non-offensive"}
TARGETS = (*CATEGORIES, "any", "safe", "ignore")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"safety.device={name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"safety.device={name!r}: CUDA is not available here")
    return device


def _local_folder(path: str | None, key: str) -> str:
    if not path:
        raise UserError(f"{key} is not set: give the local folder of the model")
    if not Path(path).expanduser().is_dir():
        raise UserError(f"{key}={path!r}: no such folder (models load from local folders only, never by hub name)")
    return str(Path(path).expanduser())


def map_labels(id2label: dict[int, str], label_map: dict[str, str], key: str) -> dict[int, str]:
    """Model label ids -> targets (a category, ``any``, ``safe`` or ``ignore``); see the module docstring."""
    labels = {str(name): int(i) for i, name in id2label.items()}
    for name, target in label_map.items():
        if name not in labels:
            raise UserError(f"{key}.label_map.{name}: the model has no such label; its labels are {sorted(labels)}")
        if target not in TARGETS:
            raise UserError(f"{key}.label_map.{name}={target!r}: expected one of {list(TARGETS)}")
    out: dict[int, str] = {}
    for name, i in labels.items():
        if name in label_map:
            out[i] = label_map[name]
        elif label_map:
            out[i] = "ignore"
        elif name.lower() in CATEGORIES:
            out[i] = name.lower()
        elif name.upper() in MODERATION_CODES:
            out[i] = MODERATION_CODES[name.upper()]
        elif name.lower() in _ANY_LABELS:
            out[i] = "any"
        elif name.lower() in _SAFE_LABELS:
            out[i] = "safe"
        else:
            out[i] = "ignore"
    if not any(t not in ("safe", "ignore") for t in out.values()):
        raise UserError(f"{key}.label_map: none of the model's labels {sorted(labels)} maps to a category or "
                        f"'any'; map them, e.g. {key}.label_map={{LABEL_1: any}}")
    return out


class ClassifierFilter(BaseFilter):
    """``classifier``: a sequence-classification model; scores the response text alone."""

    name = "classifier"

    def __init__(self, path: str, label_map: dict[str, str] | None = None, multi_label: bool | None = None,
                 thresholds: np.ndarray | None = None, batch_size: int = 32, max_length: int | None = None,
                 device: str = "auto") -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        super().__init__(thresholds)
        path = _local_folder(path, "safety.classifier.path")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForSequenceClassification.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise UserError(f"safety.classifier.path={path!r}: cannot load a text-classification model ({err})") from err
        self.device = resolve_device(device)
        self.model.to(self.device).eval()
        self.targets = map_labels(self.model.config.id2label, dict(label_map or {}), "safety.classifier")
        self.multi_label = (self.model.config.problem_type == "multi_label_classification"
                            if multi_label is None else bool(multi_label))
        self.batch_size = batch_size
        self.max_length = max_length or min(int(getattr(self.tokenizer, "model_max_length", 512) or 512), 4096)
        log.info("classifier %s: labels -> %s (%s)", path, {self.model.config.id2label[i]: t for i, t in
                 self.targets.items()}, "sigmoid" if self.multi_label else "softmax")

    @classmethod
    def from_config(cls, cfg, thresholds: np.ndarray) -> ClassifierFilter:
        c = cfg.classifier
        return cls(c.path, dict(c.label_map or {}), c.multi_label, thresholds, cfg.batch_size, cfg.max_length,
                   cfg.device)

    @torch.inference_mode()
    def _probs(self, texts: list[str]) -> np.ndarray:
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.model.config.num_labels), np.float32)
        batches = range(0, len(texts), self.batch_size)
        for start in tqdm(batches, desc="safety (classifier)", unit="batch", disable=len(batches) < 3, leave=False):
            idx = order[start:start + self.batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt").to(self.device)
            logits = self.model(**enc).logits.float()
            probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
            out[idx] = probs.cpu().numpy()
        return out

    def _score_all(self, texts: list[str], prompts: list[str] | None) -> np.ndarray:
        probs = self._probs(texts)
        scores = np.zeros((len(texts), len(SCORE_COLUMNS)), np.float32)
        mapped = []
        for i, target in self.targets.items():
            if target in CATEGORIES:
                k = CATEGORIES.index(target)
                scores[:, k] = np.maximum(scores[:, k], probs[:, i])
            if target not in ("safe", "ignore"):
                mapped.append(i)
        safe = [i for i, t in self.targets.items() if t == "safe"]
        if safe and not self.multi_label:
            scores[:, ANY_INDEX] = 1.0 - probs[:, safe].sum(axis=1)
        else:
            scores[:, ANY_INDEX] = probs[:, mapped].max(axis=1)
        return scores


class LlamaGuardFilter(BaseFilter):
    """``llama_guard``: a safe/unsafe chat classifier (see the module docstring)."""

    name = "llama_guard"

    def __init__(self, path: str, thresholds: np.ndarray | None = None, safe_token: str = "safe",
                 unsafe_token: str = "unsafe", category_codes: dict[str, str] | None = None,
                 max_new_tokens: int = 16, batch_size: int = 8, max_length: int | None = None,
                 dtype: str = "auto", device: str = "auto") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from alignment.modeling import torch_dtype

        super().__init__(thresholds)
        path = _local_folder(path, "safety.llama_guard.path")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(dtype))
        except (OSError, ValueError) as err:
            raise UserError(f"safety.llama_guard.path={path!r}: cannot load a causal LM ({err})") from err
        if self.tokenizer.chat_template is None:
            raise UserError(f"safety.llama_guard.path={path!r}: the tokenizer has no chat template")
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:  # inference only, with an attention mask: EOS is a safe pad here
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = resolve_device(device)
        self.model.to(self.device).eval()
        self.safe_id = self._first_token(safe_token, "safe_token")
        self.unsafe_id = self._first_token(unsafe_token, "unsafe_token")
        if self.safe_id == self.unsafe_id:
            raise UserError(f"safety.llama_guard: {safe_token!r} and {unsafe_token!r} start with the same token; "
                            "set safe_token/unsafe_token to words the model's first answer token tells apart")
        codes = dict(LLAMA_GUARD3_CODES if category_codes is None else category_codes)
        for code, target in codes.items():
            if target not in (*CATEGORIES, "ignore"):
                raise UserError(f"safety.llama_guard.category_codes.{code}={target!r}: expected a category or 'ignore'")
        self.codes = codes
        self._code_re = re.compile(r"\b(" + "|".join(sorted(map(re.escape, codes), key=len, reverse=True)) + r")\b") \
            if codes else None
        self.unsafe_word = unsafe_token
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.max_length = max_length
        self._blank: dict[int, bool] = {}

    @classmethod
    def from_config(cls, cfg, thresholds: np.ndarray) -> LlamaGuardFilter:
        c = cfg.llama_guard
        codes = None if c.category_codes is None else dict(c.category_codes)
        return cls(c.path, thresholds, c.safe_token, c.unsafe_token, codes, c.max_new_tokens, cfg.batch_size,
                   cfg.max_length, c.dtype, cfg.device)

    def _first_token(self, word: str, key: str) -> int:
        ids = self.tokenizer.encode(word, add_special_tokens=False)
        if not ids:
            raise UserError(f"safety.llama_guard.{key}={word!r} encodes to no token")
        return int(ids[0])

    def is_blank(self, token_id: int) -> bool:
        """Whether a token decodes to whitespace only (Llama Guard 3 writes a blank line before its answer)."""
        if token_id not in self._blank:
            piece = self.tokenizer.decode([token_id])
            self._blank[token_id] = bool(piece) and not piece.strip()
        return self._blank[token_id]

    def chat(self, text: str, prompt: str | None) -> str:
        messages = [{"role": "user", "content": text}] if prompt is None else \
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": text}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def parse_categories(self, generated: str) -> list[str]:
        """Categories named by the codes after the unsafe word (``"unsafe\\nS1,S10"`` -> violence, hate)."""
        if self._code_re is None or self.unsafe_word not in generated:
            return []
        tail = generated.split(self.unsafe_word, 1)[1]
        return [self.codes[c] for c in self._code_re.findall(tail) if self.codes[c] != "ignore"]

    @torch.inference_mode()
    def _score_all(self, texts: list[str], prompts: list[str] | None) -> np.ndarray:
        from transformers import GenerationConfig

        chats = [self.chat(t, None if prompts is None else prompts[i]) for i, t in enumerate(texts)]
        order = np.argsort([len(c) for c in chats], kind="stable")
        scores = np.zeros((len(texts), len(SCORE_COLUMNS)), np.float32)
        gen_cfg = GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=False,
                                   pad_token_id=self.tokenizer.pad_token_id,
                                   eos_token_id=self.model.generation_config.eos_token_id)
        batches = range(0, len(texts), self.batch_size)
        for start in tqdm(batches, desc="safety (llama_guard)", unit="batch", disable=len(batches) < 3, leave=False):
            idx = order[start:start + self.batch_size]
            enc = self.tokenizer([chats[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False,
                                 truncation=self.max_length is not None, max_length=self.max_length).to(self.device)
            out = self.model.generate(**enc, generation_config=gen_cfg, output_logits=True,
                                      return_dict_in_generate=True)
            generated = out.sequences[:, enc["input_ids"].shape[1]:].cpu()
            logits = torch.stack(out.logits, dim=1).float().cpu()  # [batch, steps, vocab]
            for row, i in enumerate(idx):
                step = next((t for t in range(generated.shape[1]) if not self.is_blank(int(generated[row, t]))), 0)
                pair = logits[row, step, [self.safe_id, self.unsafe_id]]
                p_unsafe = float(torch.softmax(pair, dim=0)[1])
                scores[i, ANY_INDEX] = p_unsafe
                text = self.tokenizer.decode(generated[row], skip_special_tokens=True)
                for category in self.parse_categories(text):
                    scores[i, CATEGORIES.index(category)] = p_unsafe
        return scores
