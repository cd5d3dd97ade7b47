"""Simulated annotators that log in and label through the app's real HTTP API (``gradio_client``).

A bot reads the item exactly as a person's browser gets it (prompt, then the response shown first and
the one shown second) and answers:

* **demo-world prompts** (``DemoWorld.find(prompt)`` knows the prompt): with
  :class:`~alignment.data.world.SimulatedAnnotator` (gold preference, configurable noise and position
  bias), flagging a response the world calls unsafe under the prompt's safety category (``harassment``
  for an insult to a benign question);
* **anything else** (e.g. imported HH-RLHF pairs, or two answers the world cannot judge because
  neither fits a style, as a barely trained policy writes at ``scale=smoke``), a deterministic fallback: the response whose
  ``sha256(prompt + "\\x00" + response)`` is smaller wins, with strength ``1 + (first byte of the XOR of
  both digests) % 4``. It does not depend on which side a response is shown on, so every bot agrees with
  every other on such items (it measures plumbing, not judgement), and no flags are set.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import secrets
import threading
from functools import lru_cache
from typing import Any

from alignment.data.world import DemoWorld, Prompt, SimulatedAnnotator
from labeling_ui.store import LabelStore

log = logging.getLogger(__name__)

#: Category to flag when a benign prompt gets an insulting answer.
TOXIC_CATEGORY = "harassment"


def fallback_label(prompt: str, first: str, second: str) -> tuple[str, int]:
    """The deterministic, position-independent answer for items outside the demo world."""
    h1 = hashlib.sha256((prompt + "\x00" + first).encode()).digest()
    h2 = hashlib.sha256((prompt + "\x00" + second).encode()).digest()
    if h1 == h2:
        return "tie", 1
    return ("A" if h1 < h2 else "B"), 1 + (h1[0] ^ h2[0]) % 4


class BotBrain:
    """Decides labels for one bot (no network): demo world first, the hash fallback otherwise."""

    def __init__(self, world: DemoWorld, noise: float = 0.1, position_bias: float = 0.0, seed: int = 0) -> None:
        self.world = world
        self.annotator = SimulatedAnnotator(world, noise=noise, position_bias=position_bias, seed=seed)
        self._find = lru_cache(maxsize=4096)(world.find)

    def flags(self, prompt: Prompt, response: str) -> list[str]:
        if not self.world.is_unsafe(prompt, response):
            return []
        return [prompt.category] if prompt.kind == "harmful" else [TOXIC_CATEGORY]

    def decide(self, prompt_text: str, first: str, second: str) -> dict[str, Any]:
        """``{"choice", "strength", "flags_a", "flags_b"}`` in display terms (A = shown first)."""
        prompt = self._find(prompt_text)
        unjudgeable = prompt is not None and all(self.world.classify(prompt, r) is None for r in (first, second))
        if prompt is None or unjudgeable:
            choice, strength = fallback_label(prompt_text, first, second)
            return {"choice": choice, "strength": strength if choice in ("A", "B") else None,
                    "flags_a": [], "flags_b": []}
        label = self.annotator.label(prompt, first, second)
        return {"choice": label.choice, "strength": label.strength if label.choice in ("A", "B") else None,
                "flags_a": self.flags(prompt, first), "flags_b": self.flags(prompt, second)}


class Bot:
    """One simulated annotator: a ``gradio_client.Client`` logged in as ``name``."""

    def __init__(self, url: str, name: str, password: str, brain: BotBrain) -> None:
        from gradio_client import Client

        self.name = name
        self.brain = brain
        self.client = Client(url, auth=(name, password), verbose=False, analytics_enabled=False,
                             download_files=False)
        self.label_ids: list[int] = []

    def call(self, api_name: str, *args: Any) -> Any:
        return self.client.predict(*args, api_name=f"/{api_name}")

    def run(self, max_labels: int | None = None) -> dict[str, Any]:
        item = self.call("next_item")
        errors = 0
        while item.get("assignment") is not None and (max_labels is None or len(self.label_ids) < max_labels):
            d = self.brain.decide(item["prompt"], item["response_a"], item["response_b"])
            result = self.call("submit_label", item["assignment"], d["choice"], d["strength"],
                               d["flags_a"], d["flags_b"], "", None)
            if result.get("ok"):
                self.label_ids.append(result["label_id"])
            else:
                errors += 1
                log.warning("bot %s: label refused: %s", self.name, result.get("error"))
            item = result["next"]
        return {"name": self.name, "labels": len(self.label_ids), "refused": errors}

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - best effort
            pass


def ensure_bot_accounts(store: LabelStore, n: int, name_prefix: str = "bot") -> list[tuple[str, str]]:
    """``n`` bot accounts (fresh random passwords; existing bot accounts are reset)."""
    accounts = []
    for i in range(n):
        name, password = f"{name_prefix}{i:02d}", secrets.token_urlsafe(12)
        store.add_annotator(name, password, "annotator", update=True)
        accounts.append((name, password))
    return accounts


def run_bots(store: LabelStore, url: str, *, n: int = 3, noise: float = 0.1, position_bias: float = 0.0,
             max_labels: int | None = None, name_prefix: str = "bot", world_seed: int = 0,
             seed: int = 0) -> dict[str, Any]:
    """Run ``n`` bots in threads until the queue is empty for them (or ``max_labels`` each)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    world = DemoWorld(world_seed)
    accounts = ensure_bot_accounts(store, n, name_prefix)
    results: list[dict[str, Any]] = [{} for _ in accounts]
    rng = random.Random(seed)

    def work(i: int, name: str, password: str, seed: int) -> None:
        bot = None
        try:        # connecting and logging in can fail too (no server at url): a failure to report
            bot = Bot(url, name, password, BotBrain(world, noise, position_bias, seed=seed))
            results[i] = bot.run(max_labels)
        except Exception as e:  # noqa: BLE001 - report, do not kill the other bots
            log.exception("bot %s failed", name)
            results[i] = {"name": name, "labels": len(bot.label_ids) if bot else 0, "error": repr(e)}
        finally:
            if bot is not None:
                bot.close()

    threads = [threading.Thread(target=work, args=(i, name, pw, rng.randrange(1 << 30) + i), daemon=True)
               for i, (name, pw) in enumerate(accounts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"bots": results, "labels": sum(r.get("labels", 0) for r in results)}
