"""What every stage built on a transformers ``Trainer`` (SFT, reward) sets alike."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from alignment.config import Config


def trainer_defaults(cfg: Config, out_dir: Path, stage: Any) -> dict:
    """TrainingArguments every Trainer-based stage shares: where checkpoints and TensorBoard logs go,
    CPU-safe precision (no bf16/fp16 on a CPU), the seed, and the settings every such stage's config
    section (``cfg.sft``, ``cfg.reward``) spells alike: batch size, accumulation, steps, warmup, weight
    decay, logging and saving."""
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out_dir / "logs")  # transformers 5 reads it from the environment
    return {"output_dir": str(out_dir / "checkpoints"), "eval_strategy": "no", "bf16": False, "fp16": False,
            "use_cpu": not torch.cuda.is_available(), "report_to": ["tensorboard"], "seed": cfg.seed,
            "dataloader_num_workers": 0, "per_device_train_batch_size": stage.batch_size,
            "gradient_accumulation_steps": stage.grad_accum, "max_steps": stage.max_steps,
            "warmup_steps": stage.warmup_ratio, "weight_decay": stage.weight_decay,
            "logging_steps": stage.logging_steps, "save_steps": stage.save_steps,
            "save_total_limit": stage.save_total_limit}
