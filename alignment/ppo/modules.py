"""The modules PPO trains and how it runs them: the policy and value model as one module, their
precision (float32 master weights, an autocast compute dtype), and the rollout's reusable forward.

:class:`~alignment.ppo.trainer.PPOTrainer` builds a :class:`PolicyAndValue` with
:func:`build_policy_and_value`, puts its trainable weights in float32 (:func:`to_master_weights`) and
runs every forward under autocast in :func:`compute_dtype`'s dtype.
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate import Accelerator
from torch import nn
from transformers import AutoModel, AutoModelForSequenceClassification, PreTrainedModel

from alignment.config import LoRAConfig
from alignment.errors import UserError
from alignment.generation import logits_to_keep_kwargs
from alignment.modeling import add_lora

#: accelerate's ``mixed_precision`` names -> the autocast dtype (``None``: float32 throughout).
COMPUTE_DTYPES: dict[str, torch.dtype | None] = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def compute_dtype(setting: str, accelerator: Accelerator) -> torch.dtype | None:
    """The autocast dtype for ``ppo.mixed_precision`` (``auto``: accelerate's own setting).

    fp16 needs a loss scaler, which accelerate only provides when it was itself set to fp16.
    """
    name = accelerator.mixed_precision if setting == "auto" else str(setting)
    if name not in COMPUTE_DTYPES:
        raise UserError(f"mixed precision {name!r} is not supported by PPO; use one of {list(COMPUTE_DTYPES)}")
    if name == "fp16" and accelerator.mixed_precision != "fp16":
        raise UserError("ppo.mixed_precision=fp16 needs accelerate's loss scaler: launch with accelerate's "
                        "mixed_precision fp16 (or use bf16)")
    return COMPUTE_DTYPES[name]


def response_logits(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    position_ids: torch.Tensor, response_length: int, **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """A causal LM over prompt + response: ``(logits [B, R, V] that predicted each response token, output)``.

    The LM head runs over those ``R`` positions only (``logits_to_keep`` as a tensor of positions, when
    the model takes it): the prompt's logits are never used, and computing them costs a vocabulary-sized
    matmul per prompt token, plus their memory (measured in docs/experiments.md).
    The logits are then the model's own output, not a slice of it, so the backward pass does not
    scatter their gradient into a zero-filled tensor of the full output's size (one more
    ``[B, R, V]`` float32 buffer at a real vocabulary).
    """
    length = input_ids.size(1)
    keep = logits_to_keep_kwargs(model, torch.arange(length - response_length - 1, length - 1,
                                                     device=input_ids.device))
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
                **keep, **kwargs)
    return (out.logits if keep else out.logits[:, -response_length - 1:-1]), out


def disable_dropout(model: nn.Module) -> None:
    """Dropout off everywhere (as TRL): with it, the update's log-probs would differ from the rollout's
    before any step, and the clipping would act on noise."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


class PolicyAndValue(nn.Module):
    """The policy and the value model as one module, so one optimizer and one ``prepare`` cover both.

    ``value_model="separate"``: the value model is its own backbone (initialised from the policy)
    with a scalar head, as in TRL's PPOTrainer. ``"head"``: the scalar head reads the policy's own
    last hidden states (less memory; value gradients also shape the policy).
    """

    def __init__(self, policy: PreTrainedModel, value_backbone: nn.Module | None) -> None:
        super().__init__()
        self.policy = policy
        self.value_backbone = value_backbone
        self.value_head = nn.Linear(policy.config.hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        #: The decoder-layer classes, for FSDP's transformer-based wrap (accelerate reads this attribute
        #: of the prepared model; without it the whole module would be one unsharded unit).
        self._no_split_modules = list(dict.fromkeys(
            name for module in (policy, value_backbone) if module is not None
            for name in getattr(module, "_no_split_modules", None) or []))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                response_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Over prompt + response: ``(logits [B, R, V], values [B, R])`` for the ``R`` response positions
        (logits at ``t`` predict response token ``t``; the value at ``t`` is the state before it)."""
        shared = self.value_backbone is None
        logits, out = response_logits(self.policy, input_ids, attention_mask, position_ids, response_length,
                                      output_hidden_states=shared)
        if shared:
            hidden = out.hidden_states[-1]
        else:
            hidden = self.value_backbone(input_ids=input_ids, attention_mask=attention_mask,
                                         position_ids=position_ids, use_cache=False).last_hidden_state
        # the head runs in the compute dtype under autocast; the values are float32 for the losses
        return logits, self.value_head(hidden[:, -response_length - 1:-1]).squeeze(-1).float()


def build_policy_and_value(policy: PreTrainedModel, policy_path: str, value_model: str,
                           lora: LoRAConfig | None = None, reward_path: str | None = None) -> PolicyAndValue:
    """The trained module; with ``lora`` a separate value backbone gets adapters too (the policy
    already has them), so no full copy of the weights is optimised.

    ``reward_path``: the separate value model starts from the reward model, backbone and scalar head
    (the N+ implementation details): its values already follow the score it has to predict.
    """
    if value_model != "separate":
        return PolicyAndValue(policy, None)
    head = None
    if reward_path is None:
        backbone = AutoModel.from_pretrained(policy_path, dtype=policy.dtype)
    else:
        reward = AutoModelForSequenceClassification.from_pretrained(reward_path, num_labels=1, dtype=policy.dtype)
        backbone, head = reward.base_model, getattr(reward, "score", None)
        if not isinstance(head, nn.Linear) or head.in_features != policy.config.hidden_size:
            raise UserError(f"ppo.value_init=reward: {reward_path} has no scalar `score` head over "
                            f"{policy.config.hidden_size} hidden units to start the value model from")
    model = PolicyAndValue(policy, backbone if lora is None else add_lora(backbone, lora, task_type=None))
    if head is not None:
        with torch.no_grad():
            model.value_head.weight.copy_(head.weight)
            if head.bias is not None:
                model.value_head.bias.copy_(head.bias)
    return model


def to_master_weights(model: nn.Module, dtype: torch.dtype | None) -> None:
    """Trainable parameters in float32, whatever dtype the model was loaded in.

    With bf16 weights AdamW's update (``lr * m / sqrt(v)``, ~1e-6 at PPO's learning rates) is below
    half a bf16 ulp of most weights and rounds away: the policy would barely move. Frozen weights
    (a LoRA base) stay in the compute dtype when there is one (``dtype``), else float32 too.
    """
    for param in model.parameters():
        if param.dtype != torch.float32 and (param.requires_grad or dtype is None):
            param.data = param.data.float()


def full_inputs(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, tokens: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompt + response ids, attention mask, and position ids that skip the left padding."""
    ids = torch.cat([prompt_ids, tokens], dim=1)
    attention = torch.cat([prompt_mask, mask.long()], dim=1)
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
    return ids, attention, positions


class RolloutForwardReuse:
    """The policy-and-value forward of the rollout, run once for two uses when it can be.

    When an epoch is a single mini-batch run in one forward (``micro_batch == batch_size``, TRL's default
    without micro-batches), the first update step runs on the rollout's very weights and inputs, so the
    rollout's forward is run with
    autograd on and kept for that step instead of being run twice: one forward less per update, same
    numbers (dropout is off). Otherwise both methods are the plain forward.
    """

    def __init__(self, model: nn.Module, enabled: bool) -> None:
        self.model, self.enabled = model, enabled
        #: (logits, values) with their graph, from the last rollout, until the first update step takes them.
        self.kept: tuple[torch.Tensor, torch.Tensor] | None = None

    def at_rollout(self, ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor,
                   length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, values)`` over the whole batch, detached (the rollout runs without autograd).

        The kept forward runs in training mode, as the update step it stands for: transformers only
        checkpoints activations in training mode (dropout is off, so the numbers are the same).
        """
        if not self.enabled:
            return self.model(ids, attention, positions, length)
        self.model.train()
        with torch.enable_grad():
            self.kept = self.model(ids, attention, positions, length)
        return tuple(t.detach() for t in self.kept)

    def at_step(self, rows: torch.Tensor, ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor,
                length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, values)`` of the batch's ``rows`` for an update step: the kept rollout forward for
        the first step after a rollout (same weights and inputs, rows reordered), a fresh one after."""
        if self.kept is None:
            return self.model(ids[rows], attention[rows], positions[rows], length)
        kept, self.kept = self.kept, None
        return tuple(t[rows] for t in kept)
