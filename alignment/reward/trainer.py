"""Training a Bradley-Terry reward model with TRL's RewardTrainer.

Pairs are encoded by :func:`alignment.reward.encoding.encode_reward_row` (the same function the
scorer, and so PPO, reads pairs with), cutting over-long prompts from the left instead of letting
TRL drop the pair. The scalar head can start from the Bradley-Terry linear probe on the frozen
backbone's features (``reward_model.head_init=probe``) and can have its own learning rate
(``reward_model.head_lr``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import RewardConfig, RewardTrainer

from alignment.config import Config, reward_epochs
from alignment.errors import UserError
from alignment.reward.encoding import encode_reward_row, pad_rows
from alignment.training import trainer_defaults

log = logging.getLogger(__name__)


def tokenize_pairs(rows: list[dict], tokenizer: PreTrainedTokenizerBase, cfg: Config) -> tuple[Dataset, int]:
    """TRL's processed format (``chosen_ids``, ``rejected_ids``, ``margin``) and how many pairs were cut."""
    rm = cfg.reward_model
    out, truncated = [], 0
    for row in tqdm(rows, desc="tokenizing pairs", leave=False):
        chosen, cut_c = encode_reward_row(row["prompt"], row["chosen"], tokenizer, rm.max_length, rm.input_format, rm.separator)
        rejected, cut_r = encode_reward_row(row["prompt"], row["rejected"], tokenizer, rm.max_length, rm.input_format, rm.separator)
        truncated += cut_c or cut_r
        out.append({"chosen_ids": chosen["input_ids"], "rejected_ids": rejected["input_ids"], "margin": row["margin"]})
    return Dataset.from_list(out), truncated



def scalar_head(model: PreTrainedModel) -> torch.nn.Linear:
    """The freshly initialised ``Linear(hidden, 1)`` outside the pretrained backbone (BERT's
    ``classifier``, a decoder's or :class:`~alignment.reward.model.MeanPoolingRewardModel`'s ``score``)."""
    body = {id(p) for p in model.base_model.parameters()}
    heads = [m for m in model.modules()
             if isinstance(m, torch.nn.Linear) and m.out_features == 1 and id(m.weight) not in body]
    if len(heads) != 1:
        raise UserError(f"reward_model.head_init=probe: expected one scalar head outside the backbone, found {len(heads)}")
    return heads[0]


@torch.no_grad()
def init_head_from_probe(model: PreTrainedModel, train_ds: Dataset, pad_token_id: int, batch_size: int = 64,
                         c: float = 1.0) -> float:
    """Set the scalar head to the Bradley-Terry linear probe on the frozen model's features.

    With a linear head ``r = w.f + b``, Bradley-Terry on a pair is a logistic regression of "chosen
    wins" on ``f_chosen - f_rejected`` without intercept (``b`` cancels): fitted on the training
    pairs and on their mirror images (so both classes exist), it starts fine-tuning from a head that
    already ranks pairs instead of a random one (LP-FT). ``f`` is what the head reads (captured by a
    hook), so this works for any pooling. Returns the probe's accuracy on the training pairs.
    """
    from sklearn.linear_model import LogisticRegression

    head = scalar_head(model)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].float()))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    features = []
    try:
        for key in ("chosen_ids", "rejected_ids"):
            seqs = train_ds[key]
            order = np.argsort([len(x) for x in seqs], kind="stable")  # similar lengths: little padding
            out = torch.zeros(len(seqs), head.in_features)
            for start in tqdm(range(0, len(seqs), batch_size), desc=f"probe features ({key})", leave=False):
                idx = order[start:start + batch_size]
                batch = pad_rows([{"input_ids": seqs[i]} for i in idx], pad_token_id, "right")
                captured.clear()  # ids and mask only: what TRL's collator feeds in training
                model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
                out[torch.as_tensor(idx)] = captured[-1].reshape(len(idx), -1).cpu()
            features.append(out.numpy())
    finally:
        hook.remove()
        model.train(was_training)
    diff = features[0] - features[1]
    x = np.concatenate([diff, -diff])
    y = np.concatenate([np.ones(len(diff)), np.zeros(len(diff))])
    probe = LogisticRegression(C=c, fit_intercept=False, max_iter=2000).fit(x, y)
    head.weight.copy_(torch.as_tensor(probe.coef_, dtype=head.weight.dtype).reshape(head.weight.shape))
    if head.bias is not None:
        head.bias.zero_()
    return float((diff @ probe.coef_[0] > 0).mean())


class HeadLRRewardTrainer(RewardTrainer):
    """TRL's RewardTrainer with its own learning rate for the parameters outside the pretrained
    backbone (the new scalar head: BERT's ``classifier``, :class:`~alignment.reward.model.MeanPoolingRewardModel`'s ``score``);
    the scheduler then scales both rates alike."""

    def __init__(self, *args: object, head_lr: float | None = None, **kwargs: object) -> None:
        self.head_lr = head_lr
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model: PreTrainedModel | None = None) -> torch.optim.Optimizer:
        if self.optimizer is not None or self.head_lr is None:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        body = {id(p) for p in model.base_model.parameters()}
        decay = set(self.get_decay_parameter_names(model))
        groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
        for name, p in model.named_parameters():
            if p.requires_grad:
                groups.setdefault((id(p) in body, name in decay), []).append(p)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optimizer_cls(
            [{"params": params, "lr": self.args.learning_rate if in_body else self.head_lr,
              "weight_decay": self.args.weight_decay if decays else 0.0}
             for (in_body, decays), params in groups.items()], **optimizer_kwargs)
        return self.optimizer


def trainer_args(cfg: Config, out: Path) -> RewardConfig:
    """TRL's RewardConfig for the reward stage writing under ``out``."""
    r = cfg.reward
    return RewardConfig(
        **trainer_defaults(cfg, out, r),
        per_device_eval_batch_size=r.eval_batch_size,
        learning_rate=cfg.reward_model.lr,
        num_train_epochs=reward_epochs(cfg),
        lr_scheduler_type="linear",
        max_length=cfg.reward_model.max_length,
        center_rewards_coefficient=r.center_rewards_coefficient,
        activation_checkpointing=False,
    )


@dataclass
class TrainedRewardModel:
    """What :func:`train_reward_model` returns: the trainer (its model is the trained reward model)."""

    trainer: HeadLRRewardTrainer
    #: The linear probe's accuracy on the training pairs (``head_init=probe`` and not resumed), else None.
    probe_accuracy: float | None
    #: Seconds of training, the probe included.
    train_s: float


def train_reward_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, train_ds: Dataset,
                       args: RewardConfig, head_init: str, head_lr: float | None, probe_batch_size: int,
                       resume_from: str | None) -> TrainedRewardModel:
    """Initialise the head as ``head_init`` says (a resumed run reads its head from the checkpoint), then
    train with :class:`HeadLRRewardTrainer`."""
    started = time.time()  # training time includes the probe
    probe_accuracy = None
    if head_init == "probe" and resume_from is None:  # a resumed run reads its head
        probe_accuracy = init_head_from_probe(model, train_ds, tokenizer.pad_token_id, probe_batch_size)
        log.info("scalar head initialised from the linear probe (train pair accuracy %.3f)", probe_accuracy)
    trainer = HeadLRRewardTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer,
                                  head_lr=head_lr)
    trainer.train(resume_from_checkpoint=resume_from)
    return TrainedRewardModel(trainer, probe_accuracy, time.time() - started)
