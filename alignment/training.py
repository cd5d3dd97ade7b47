"""What every stage built on a transformers ``Trainer`` (SFT, reward, DPO, GRPO, RLOO) sets alike, and the
precision every stage trains and evaluates a policy at.

Precision: a policy loaded in bf16 or fp16 (``policy.dtype=bfloat16``, or ``auto`` on such a checkpoint)
trains on float32 master weights under autocast in its own dtype (:func:`master_weights`), as PPO does:
AdamW's steps on bf16 weights (``lr * m / sqrt(v)``, about the learning rate) are below half a bf16 step
of most weights and round away. Its frozen copies (the reference) and the reward models that score it
stay in that dtype, and every evaluation runs under the same autocast (:func:`autocast`), so that every
optimizer's SFT baseline is the same computation.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from alignment.config import Config
from alignment.errors import UserError

#: The dtypes a policy computes in under autocast; any other loaded dtype trains in float32 throughout.
HALF_DTYPES = (torch.bfloat16, torch.float16)


def trainer_defaults(cfg: Config, out_dir: Path, stage: Any, compute_dtype: torch.dtype | None = None) -> dict:
    """TrainingArguments every Trainer-based stage shares: where checkpoints and TensorBoard logs go, the
    precision (autocast in ``compute_dtype`` over float32 weights, :func:`master_weights`; none by default),
    the seed, and the settings every such stage's config section (``cfg.sft``, ``cfg.reward``) spells
    alike: batch size, accumulation, steps, warmup, weight decay, logging and saving."""
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out_dir / "logs")  # transformers 5 reads it from the environment
    return {"output_dir": str(out_dir / "checkpoints"), "eval_strategy": "no",
            "bf16": compute_dtype == torch.bfloat16, "fp16": compute_dtype == torch.float16,
            "use_cpu": not torch.cuda.is_available(), "report_to": ["tensorboard"], "seed": cfg.seed,
            "dataloader_num_workers": 0, "per_device_train_batch_size": stage.batch_size,
            "gradient_accumulation_steps": stage.grad_accum, "max_steps": stage.max_steps,
            "warmup_steps": stage.warmup_ratio, "weight_decay": stage.weight_decay,
            "logging_steps": stage.logging_steps, "save_steps": stage.save_steps,
            "save_total_limit": stage.save_total_limit}


def master_weights(model: PreTrainedModel, lora: bool = False) -> torch.dtype | None:
    """Float32 master weights for a policy loaded in bf16/fp16; returns that dtype, the one to compute in
    (``None``: the policy is float32 and trains so).

    Without LoRA the whole policy becomes float32 (every weight is trained); with LoRA the frozen base
    stays in its dtype and peft creates the adapters in float32. fp16 needs the Trainer's loss scaler,
    which runs on a GPU only.
    """
    loaded = model.dtype
    if loaded not in HALF_DTYPES:
        return None
    if loaded == torch.float16 and not torch.cuda.is_available():
        raise UserError("policy.dtype=float16 trains with fp16 autocast and a loss scaler, which need a GPU; "
                        "use policy.dtype=bfloat16 (or float32) on a CPU")
    if not lora:
        model.float()
    return loaded


def autocast(dtype: torch.dtype | None, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device`` for a forward or an evaluation (a no-op for ``None``)."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def autocast_forward(model: torch.nn.Module, dtype: torch.dtype | None) -> Iterator[None]:
    """``model``'s forward alone under autocast in ``dtype`` for the duration (a no-op for ``None``): for
    code that also runs models that cannot run under autocast (the safety filter's quantized encoder)."""
    if dtype is None:
        yield
        return
    own = "forward" in vars(model)  # an instance attribute already (accelerate's wrapper): put it back after
    forward = model.forward
    model.forward = torch.autocast(next(model.parameters()).device.type, dtype=dtype)(forward)
    try:
        yield
    finally:
        if own:
            model.forward = forward
        else:
            del model.forward

