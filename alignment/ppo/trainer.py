"""The PPO loop for language models, on accelerate: rollout, score, advantages, clipped updates.

One update, top to bottom (Huang et al. 2024, "The N Implementation Details of RLHF with PPO"):

1. **Rollout** (:meth:`PPOTrainer.rollout`): sample a response to each prompt of the batch
   (left-padded prompts, stop at EOS), cut everything after the first EOS, record the policy's and
   the frozen reference's per-token log-probs and the value model's per-token values, and score
   (prompt, response) text with the reward model (which may have its own tokenizer) and, when
   ``safety_penalty > 0``, the safety filter.
2. **Rewards** (:meth:`PPOTrainer.rewards`): normalise the scores with the statistics saved by the
   reward stage, clip, subtract the missing-EOS penalty and ``safety_penalty * P(unsafe)``; the
   per-token reward is ``-beta * KL`` plus that score at the last real token.
3. **Advantages** (:meth:`PPOTrainer.advantages`): GAE, advantages whitened over all processes.
4. **PPO epochs** (:meth:`PPOTrainer.ppo_epochs`): ``ppo_epochs`` passes over shuffled minibatches
   with the clipped policy and value losses (each mini-batch in ``micro_batch_size`` slices whose
   gradients accumulate to one optimizer step).
5. **KL control**: the adaptive controller moves ``beta`` towards the KL target.

The statistics of an update are gathered over all processes in one separate step
(:meth:`PPOTrainer.statistics`), after the algorithm has run.

With ``lora.enabled`` the policy (and a separate value backbone) carry LoRA adapters and the
reference is the same policy with its adapters disabled: one copy of the base weights in memory.

Precision (``mixed_precision``): the trained weights are float32 master weights whatever dtype the
policy was loaded in; with ``bf16``/``fp16`` every forward (generation, policy, value, reference,
reward) runs under autocast in that dtype, and the log-probs, values and losses are float32.

Everything that makes a run resumable (models, optimizer, scheduler, RNG states through
``accelerator.save_state``, plus the KL controller and the progress registered for checkpointing)
is saved every ``save_every`` updates, so a run killed at any point continues to the same result.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import math
import random
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    get_scheduler,
)

from alignment.config import PPOStageConfig, RewardTermsConfig
from alignment.data.prompts import PromptLike, as_prompt
from alignment.errors import UserError
from alignment.generation import chat_prompt_ids, sample_tokens, stop_token_ids
from alignment.modeling import add_lora
from alignment.ppo import engines
from alignment.ppo.advantages import (
    compute_gae,
    compute_rewards,
    normalise_scores,
    safety_penalty,
    whiten_advantages,
    whiten_rewards,
)
from alignment.ppo.batches import Progress, Rewards, Rollout
from alignment.ppo.kl import make_kl_controller, per_token_kl, sequence_kl
from alignment.ppo.losses import explained_variance, ppo_loss
from alignment.ppo.modules import (
    RolloutForwardReuse,
    build_policy_and_value,
    compute_dtype,
    disable_dropout,
    full_inputs,
    response_logits,
    to_master_weights,
)
from alignment.ppo.rollout_math import (
    apply_missing_eos_penalty,
    logprobs_and_entropy,
    logprobs_from_logits,
    masked_mean,
    truncate_after_eos,
)
from alignment.safety.filter import ANY_INDEX, SafetyFilter

log = logging.getLogger(__name__)

#: ``scorer(prompts, responses) -> raw reward-model scores``, one float per pair.
Scorer = Callable[[list[str], list[str]], np.ndarray]


class NonFiniteLossError(RuntimeError):
    """A loss or the gradient became NaN or infinite: the run stops, keeping its last good checkpoint."""


def rng_devices() -> list[int]:
    """The devices whose RNG ``fork_rng`` must save and restore: every CUDA device (an evaluation
    reseeds them all through ``torch.manual_seed``), none on a CPU-only machine."""
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


class PPOTrainer:
    """Runs PPO updates over a stream of prompts. The stage module loads models and writes outputs.

    Under ``accelerate launch`` every process samples its own ``batch_size`` prompts per update
    (disjoint slices of one seeded order), advantages are whitened over all processes' tokens (as
    OpenRLHF and verl; TRL whitened per process), and DDP averages the gradients; the logged statistics are averaged over all processes, so every process records the
    same history and moves the KL coefficient the same way.
    """

    def __init__(self, cfg: PPOStageConfig, accelerator: Accelerator, policy: PreTrainedModel, policy_path: str,
                 tokenizer: PreTrainedTokenizerBase, scorer: Scorer, reward_mean: float, reward_std: float,
                 prompts: Sequence[PromptLike | str], seed: int, num_updates: int,
                 safety_filter: SafetyFilter | None = None, terms: RewardTermsConfig | None = None) -> None:
        #: The run's reward (``reward_terms``): the score's clip, the penalties, the KL coefficient.
        self.terms = terms = terms or RewardTermsConfig()
        if terms.safety_penalty > 0 and safety_filter is None:
            raise ValueError("reward_terms.safety_penalty > 0 needs a safety filter to score the responses")
        engines.check_engine(accelerator)
        engines.check_whole(accelerator, policy)
        engines.load_models_whole(accelerator)  # the value model and the copies below load whole too
        self.cfg, self.accelerator, self.tokenizer, self.scorer = cfg, accelerator, tokenizer, scorer
        self.safety_filter = safety_filter if terms.safety_penalty > 0 else None
        self.reward_mean, self.reward_std = reward_mean, reward_std
        self.prompts = [as_prompt(p, f"prompt {i}") for i, p in enumerate(prompts)]
        self.seed, self.num_updates = seed, num_updates
        self._prompt_ids: dict[str, list[int]] = {}  # by prompt text
        #: The autocast dtype of every forward (``None``: float32 throughout).
        self.compute_dtype = compute_dtype(cfg.mixed_precision, accelerator)
        #: Every id that ends an answer (the sampler reads nothing else of the model's generation config).
        self.stop_ids = stop_token_ids(policy, tokenizer)
        if cfg.lora.enabled:
            policy = add_lora(policy, cfg.lora)
            #: ``None`` with LoRA: the reference is the policy with its adapters disabled (:meth:`reference_model`).
            self.reference: PreTrainedModel | None = None
        else:
            # frozen: it needs no master weights, only the compute dtype
            self.reference = copy.deepcopy(policy).eval().requires_grad_(False).to(
                accelerator.device, dtype=self.compute_dtype or torch.float32)
        reward_path = None
        if cfg.value_init == "reward":
            reward_path = cfg.reward_path
            if AutoTokenizer.from_pretrained(reward_path).get_vocab() != tokenizer.get_vocab():
                raise UserError(f"ppo.value_init=reward: the reward model at {reward_path} has its own tokenizer; "
                                "the value model reads the policy's tokens (use ppo.value_init=policy)")
        model = build_policy_and_value(policy, policy_path, cfg.value_model, cfg.lora if cfg.lora.enabled else None,
                                       reward_path)
        to_master_weights(model, self.compute_dtype)
        if cfg.gradient_checkpointing:
            for module in (model.policy, model.value_backbone):
                if module is not None:
                    module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        for module in (model, self.reference):
            if module is not None:
                disable_dropout(module)
        log.info("PPO precision: %s compute, float32 master weights%s",
                 str(self.compute_dtype).removeprefix("torch.") if self.compute_dtype else "float32",
                 ", gradient checkpointing" if cfg.gradient_checkpointing else "")
        #: Counted before ``prepare``: under ZeRO-3 a process holds only shards of them.
        self.trainable_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
        # the fused kernel updates all parameters in one pass (the for-each one makes several over them)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, eps=1e-5,
                                      fused=accelerator.device.type in ("cpu", "cuda"))
        # accelerate's prepared scheduler steps once per process at each optimizer step (it assumes each
        # process saw 1/N of a data set); give it N times our per-process steps so the decay spans the run.
        steps = num_updates * cfg.ppo_epochs * (cfg.batch_size // cfg.mini_batch_size)
        scheduler = get_scheduler("linear", optimizer, num_warmup_steps=0,
                                  num_training_steps=steps * engines.scheduler_steps_per_update(accelerator))
        engines.configure_deepspeed(accelerator, cfg.micro_batch, math.ceil(cfg.mini_batch_size / cfg.micro_batch),
                                    cfg.max_grad_norm)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)
        # accelerate's mixed precision wraps the forward in autocast and casts its outputs to float32: a float32
        # copy of the [B, R, V] logits kept for the backward. PPO autocasts each forward itself (autocast) and
        # takes the log-probs in float32 chunk by chunk, so that wrapper goes.
        accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)
        self.forward = RolloutForwardReuse(self.model, enabled=cfg.micro_batch == cfg.batch_size)
        self.kl_ctl = make_kl_controller(terms.kl_coef, cfg.kl.adaptive, cfg.kl.target, cfg.kl.horizon)
        self.progress = Progress()
        accelerator.register_for_checkpointing(self.kl_ctl)
        accelerator.register_for_checkpointing(self.progress)

    @contextlib.contextmanager
    def heap_frozen(self) -> Iterator[None]:
        """The training loop's garbage collection without the startup's objects: what exists now (modules,
        models, optimizer) lives as long as the run, so the cyclic collector stops traversing it
        (``gc.freeze``) until the block ends, and then does again, for whatever runs next in this process.
        A heap someone else froze is left as it is."""
        if gc.get_freeze_count():
            yield
            return
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()

    # ------------------------------------------------------------------ models
    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the compute dtype for a forward (a no-op in float32)."""
        if self.compute_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.accelerator.device.type, dtype=self.compute_dtype)

    def sum_over_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over every process (the identity on one)."""
        return self.accelerator.reduce(tensor, "sum") if self.accelerator.num_processes > 1 else tensor

    def policy(self) -> PreTrainedModel:
        """The policy being trained (a ``peft.PeftModel`` with LoRA): sample from it inside
        :meth:`full_policy`, do not save it (:meth:`gather_policy`)."""
        return self.accelerator.unwrap_model(self.model).policy

    @contextlib.contextmanager
    def full_policy(self) -> Iterator[PreTrainedModel]:
        """The policy with all its weights on this process, for sampling and evaluation.

        Under ZeRO-3 and FSDP this gathers every process's shards: every process must enter, then each
        may run any number of forwards (see :func:`alignment.ppo.engines.full_weights`).
        """
        with engines.full_weights(self.accelerator, self.model):
            yield self.policy()

    def gather_policy(self) -> PreTrainedModel | None:
        """The trained policy whole, on the main process (``None`` on the others), for
        :meth:`export_policy`, :meth:`save_adapter` and the final evaluation.

        Without sharding it is the live policy. Under ZeRO-3 and FSDP it is a collective (every process
        calls it) returning a plain copy on the accelerator's device, in the gathered weights' dtype: the
        evaluations that follow sample from it there, not on the CPU.
        """
        if not engines.is_sharded(self.accelerator):
            return self.policy() if self.accelerator.is_main_process else None
        live = self.policy()
        base = live.get_base_model() if self.cfg.lora.enabled else live
        copy_ = None
        if self.accelerator.is_main_process:
            with torch.device(self.accelerator.device):  # built where it will run; the weights are copied in below
                copy_ = AutoModelForCausalLM.from_config(base.config, dtype=next(live.parameters()).dtype)
            if self.cfg.lora.enabled:
                copy_ = add_lora(copy_, self.cfg.lora)
        with self.full_policy() as live:
            if copy_ is None:
                return None
            loaded = copy_.load_state_dict({name: t.detach() for name, t in live.named_parameters()}, strict=False)
        copy_.tie_weights()
        # named_parameters lists a tied weight (lm_head = embeddings) once; buffers are computed, not trained
        tied = ({n for n, _ in copy_.named_parameters(remove_duplicate=False)} - {n for n, _ in copy_.named_parameters()})
        if loaded.unexpected_keys or set(loaded.missing_keys) - tied - {n for n, _ in copy_.named_buffers()}:
            raise RuntimeError(f"the gathered policy does not fit its architecture: missing {loaded.missing_keys}, "
                               f"unexpected {loaded.unexpected_keys}")
        (copy_.get_base_model() if self.cfg.lora.enabled else copy_).generation_config = copy.deepcopy(
            base.generation_config)
        return copy_.eval()

    @contextlib.contextmanager
    def reference_model(self) -> Iterator[PreTrainedModel]:
        """The frozen reference policy, for the duration of the ``with`` block.

        Without LoRA it is the copy made at the start; with LoRA it is the policy itself with its
        adapters disabled, which is exactly the starting policy (the base weights are frozen).
        """
        if self.reference is not None:
            yield self.reference
            return
        policy = self.policy()
        with policy.disable_adapter():
            yield policy

    @contextlib.contextmanager
    def full_reference(self) -> Iterator[PreTrainedModel]:
        """:meth:`reference_model` with all its weights on this process, for an evaluation.

        With LoRA the reference is the live policy, sharded under ZeRO-3 and FSDP: this is then a
        collective like :meth:`full_policy` (every process must enter; inside, any may run any number of
        forwards). Without LoRA it is the whole frozen copy, and nothing is gathered.
        """
        with self.full_policy() if self.reference is None else contextlib.nullcontext(), \
                self.reference_model() as reference:
            yield reference

    @contextlib.contextmanager
    def reference_beside(self, trained: PreTrainedModel) -> Iterator[PreTrainedModel]:
        """The reference for :meth:`gather_policy`'s ``trained`` policy, on the main process alone and without
        communication (the other processes may have finished): with LoRA, ``trained`` itself with its
        adapters disabled (under ZeRO-3 and FSDP a whole copy, where the live policy is sharded)."""
        if self.reference is not None:
            yield self.reference
            return
        with trained.disable_adapter():
            yield trained

    def export_policy(self, policy: PreTrainedModel) -> PreTrainedModel:
        """The trained policy (:meth:`gather_policy`'s) as a plain transformers model, for ``save_pretrained``.

        With LoRA, a copy with the adapters merged into the weights (``merge_and_unload``), so
        ``AutoModelForCausalLM.from_pretrained`` loads it without peft; the live policy keeps its
        adapters (the copy is transient memory at the end of a run, never during training).
        """
        return copy.deepcopy(policy).merge_and_unload() if self.cfg.lora.enabled else policy

    @staticmethod
    def save_adapter(policy: PreTrainedModel, path: Path) -> None:
        """The LoRA adapters alone of :meth:`gather_policy`'s policy (peft's ``adapter_config.json`` +
        weights), to reapply on the base policy."""
        policy.save_pretrained(str(path))

    # ------------------------------------------------------------------ data
    def batch_prompts(self, update: int, process_index: int | None = None) -> list[PromptLike]:
        """A process's prompts for an update (this process's by default): a seeded shuffle per pass
        over the prompt set."""
        per_update = self.cfg.batch_size * self.accelerator.num_processes
        process = self.accelerator.process_index if process_index is None else process_index
        start = update * per_update + process * self.cfg.batch_size
        out = []
        for i in range(start, start + self.cfg.batch_size):
            epoch, pos = divmod(i, len(self.prompts))
            order = list(range(len(self.prompts)))
            random.Random(f"ppo-prompts/{self.seed}/{epoch}").shuffle(order)
            out.append(self.prompts[order[pos]])
        return out

    def prompt_ids(self, prompt: PromptLike) -> list[int]:
        """The prompt's chat-template ids, cached: every pass over the prompt set meets it again."""
        if prompt.text not in self._prompt_ids:
            self._prompt_ids[prompt.text] = chat_prompt_ids(self.tokenizer, prompt.messages)
        return self._prompt_ids[prompt.text]

    # ------------------------------------------------------------------ the update, top to bottom
    def step(self) -> dict[str, float]:
        """One PPO update; returns its statistics (also appended to the progress history)."""
        update = self.progress.update
        rollout = self.rollout(self.batch_prompts(update))
        rewards = self.rewards(rollout)
        advantages, returns = self.advantages(rollout, rewards)
        losses = self.ppo_epochs(rollout, advantages, returns)
        stats = self.statistics(rollout, rewards, returns, losses)
        self.progress.drew(stats["rollout/samples"], stats["rollout/tokens"])
        stats["objective/beta"] = self.kl_ctl.value
        self.kl_ctl.update(stats["objective/kl"], self.cfg.batch_size * self.accelerator.num_processes)
        stats["update"] = update + 1
        stats["episodes"] = self.progress.policy_samples
        for k, v in stats.items():
            if isinstance(v, float) and not math.isfinite(v) and k != "value/explained_variance":
                raise NonFiniteLossError(f"{k} became {v} at update {update + 1}")
        self.progress.history.append(stats)
        self.progress.update = update + 1
        return stats

    # ------------------------------------------------------------------ 1. rollout
    @torch.no_grad()
    def rollout(self, prompts: Sequence[PromptLike | str]) -> Rollout:
        """Sample, then measure the old log-probs and values, the reference log-probs and the scores."""
        tok, gen, device = self.tokenizer, self.cfg.generation, self.accelerator.device
        prompts = [as_prompt(p, f"prompt {i}") for i, p in enumerate(prompts)]
        encoded = [self.prompt_ids(p) for p in prompts]
        width = max(len(e) for e in encoded)
        prompt_ids = torch.full((len(prompts), width), tok.pad_token_id, dtype=torch.long)
        prompt_mask = torch.zeros_like(prompt_ids)
        for i, ids in enumerate(encoded):
            prompt_ids[i, width - len(ids):] = torch.tensor(ids)
            prompt_mask[i, width - len(ids):] = 1
        prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
        with self.full_policy() as policy, self.autocast():  # every process gathers, then samples alone
            policy.eval()
            responses = sample_tokens(policy, prompt_ids, prompt_mask, gen.max_new_tokens, gen.temperature,
                                      self.stop_ids, tok.pad_token_id)
            cut = truncate_after_eos(responses, self.stop_ids, tok.pad_token_id)
            ids, attention, positions = full_inputs(prompt_ids, prompt_mask, cut.tokens, cut.mask)
            # with LoRA the reference is this policy with its adapters off: it runs on the weights gathered here
            # (FSDP gathers its root unit's weights, the embeddings among them, only for a forward of the whole)
            ref_logprobs = self.reference_logprobs(ids, attention, positions, cut.tokens) if self.reference is None else None
        if ref_logprobs is None:  # the whole frozen copy: run after the gathered weights are freed
            ref_logprobs = self.reference_logprobs(ids, attention, positions, cut.tokens)
        length = cut.tokens.size(1)
        logprobs, values = [], []
        for rows in torch.arange(len(ids), device=device).split(self.cfg.micro_batch):  # one slice: the reusable forward
            with self.autocast():
                logits, row_values = self.forward.at_rollout(ids[rows], attention[rows], positions[rows], length)
            logprobs.append(logprobs_from_logits(logits, cut.tokens[rows], gen.temperature))
            values.append(row_values)
            del logits
        logprobs, values = torch.cat(logprobs), torch.cat(values)
        texts = [tok.decode(row[:n], skip_special_tokens=True).strip()
                 for row, n in zip(cut.tokens.tolist(), cut.lengths.tolist())]
        prompt_texts = [p.text for p in prompts]  # what the reward model and the filter read
        with self.autocast():
            raw_scores = self.scorer(prompt_texts, texts)
        scores = torch.as_tensor(raw_scores, dtype=torch.float32, device=device)
        p_unsafe = flagged = None
        if self.safety_filter is not None:
            safety = self.safety_filter.score_all(texts, prompt_texts)
            p_unsafe = torch.as_tensor(safety[:, ANY_INDEX], dtype=torch.float32, device=device)
            flagged = torch.as_tensor((safety >= self.safety_filter.thresholds).any(axis=1), device=device)
        return Rollout(prompt_ids, prompt_mask, cut.tokens, cut.mask, cut.has_eos, logprobs, ref_logprobs,
                       values.float(), scores, texts, p_unsafe, flagged)

    def reference_logprobs(self, ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor,
                           tokens: torch.Tensor) -> torch.Tensor:
        """The frozen reference's log-probs of the sampled ``tokens``, a micro-batch at a time (the logits of
        one are gone before the next: before the policy's too, which the first update step may keep)."""
        out = []
        for rows in torch.arange(len(ids), device=ids.device).split(self.cfg.micro_batch):
            with self.reference_model() as reference, self.autocast():
                logits, _ = response_logits(reference, ids[rows], attention[rows], positions[rows], tokens.size(1))
            out.append(logprobs_from_logits(logits, tokens[rows], self.cfg.generation.temperature))
            del logits
        return torch.cat(out)

    # ------------------------------------------------------------------ 2. rewards
    def rewards(self, r: Rollout) -> Rewards:
        """Each response's score (normalised, clipped, penalised) paid at its last real token, and the
        per-token KL penalty against the reference."""
        cfg = self.cfg
        scores = normalise_scores(r.scores, self.reward_mean, self.reward_std, self.terms.clip)
        scores = apply_missing_eos_penalty(scores, r.has_eos, self.terms.missing_eos_penalty)
        penalty = None
        if r.p_unsafe is not None:
            penalty = safety_penalty(r.p_unsafe, self.terms.safety_penalty)
            scores = scores - penalty
        kl = per_token_kl(r.logprobs, r.ref_logprobs, cfg.kl.estimator, r.mask)
        per_token, non_score = compute_rewards(scores, kl, r.mask, self.kl_ctl.value)
        if cfg.whiten_rewards:
            per_token = whiten_rewards(per_token, r.mask, self.sum_over_processes)
        return Rewards(scores, kl, non_score, per_token, penalty)

    # ------------------------------------------------------------------ 3. advantages
    def advantages(self, r: Rollout, rewards: Rewards) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE advantages whitened over every process's tokens, and the value targets (returns)."""
        advantages, returns = compute_gae(rewards.per_token, r.values, r.mask, self.cfg.gamma, self.cfg.lam)
        return whiten_advantages(advantages, r.mask, self.sum_over_processes), returns

    # ------------------------------------------------------------------ 4. PPO epochs
    def ppo_epochs(self, r: Rollout, advantages: torch.Tensor, returns: torch.Tensor) -> dict[str, torch.Tensor]:
        """``ppo_epochs`` passes of clipped-loss steps over shuffled minibatches; returns this process's
        loss statistics averaged over the steps (0-d tensors).

        A mini-batch runs in ``micro_batch_size`` slices; each slice's loss (a mean over its real
        tokens) is weighted by its share of the mini-batch's real tokens, so the accumulated gradient
        is that of the mini-batch's loss, exactly as without slicing.
        """
        cfg = self.cfg
        ids, attention, positions = full_inputs(r.prompt_ids, r.prompt_mask, r.tokens, r.mask)
        length = r.tokens.size(1)
        self.model.train()
        totals: torch.Tensor | None = None
        names: list[str] = []
        steps = 0
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(len(ids), device=ids.device)
            for start in range(0, len(ids), cfg.mini_batch_size):
                mb = order[start:start + cfg.mini_batch_size]
                tokens_in_mb = r.mask[mb].sum()
                finite = torch.ones((), dtype=torch.bool, device=ids.device)
                step_stats: torch.Tensor | float = 0.0
                slices = mb.split(cfg.micro_batch)
                for i, rows in enumerate(slices):
                    share = r.mask[rows].sum() / tokens_in_mb
                    # gradients are synchronised across processes once per mini-batch, at its last slice
                    sync = contextlib.nullcontext() if i == len(slices) - 1 else self.accelerator.no_sync(self.model)
                    with sync:
                        with self.autocast():
                            logits, values = self.forward.at_step(rows, ids, attention, positions, length)
                        # the entropy statistic from the log-probs' pass; a bonus needs its gradient (from the logits)
                        logprobs, entropy = logprobs_and_entropy(logits, r.tokens[rows], cfg.generation.temperature,
                                                                 entropy=not cfg.entropy_coef)
                        loss, stats = ppo_loss(logprobs, r.logprobs[rows], advantages[rows], values, r.values[rows],
                                               returns[rows], r.mask[rows], cfg.cliprange, cfg.cliprange_value,
                                               cfg.vf_coef, logits=logits if cfg.entropy_coef else None,
                                               entropy_coef=cfg.entropy_coef, temperature=cfg.generation.temperature,
                                               entropy=entropy)
                        del logits  # the backward frees them once their gradient is computed, not at the end
                        finite &= torch.isfinite(loss)
                        engines.backward(self.accelerator, self.model, loss * share, boundary=i == len(slices) - 1)
                    names = list(stats)
                    step_stats = step_stats + share * torch.stack(list(stats.values()))
                self.raise_unless_finite(finite)  # before the step: a NaN gradient must not reach the weights
                norm = engines.step(self.accelerator, self.model, self.optimizer, self.scheduler, cfg.max_grad_norm)
                if norm is not None and not math.isfinite(norm):  # a finite loss can still overflow in the backward
                    raise NonFiniteLossError(f"the PPO gradient norm became {norm} at update {self.progress.update + 1}; "
                                             "the step was skipped")
                totals = step_stats if totals is None else totals + step_stats
                steps += 1
                self.progress.optimizer_steps += 1
        return dict(zip(names, totals / steps))

    def raise_unless_finite(self, finite: torch.Tensor) -> None:
        """Raise :class:`NonFiniteLossError` on *every* process when any process's loss was not finite.

        The flag is all-reduced first: a process that raised alone would leave the others waiting in
        the next gradient all-reduce until the collective timeout (30 minutes by default).
        """
        bad = (~finite).float().reshape(1)
        if self.accelerator.num_processes > 1:
            bad = self.accelerator.reduce(bad, "sum")
        if bad.item() > 0:
            raise NonFiniteLossError(f"the PPO loss became NaN or infinite on {int(bad.item())} process(es) "
                                     f"at update {self.progress.update + 1}")

    # ------------------------------------------------------------------ statistics
    def statistics(self, r: Rollout, rewards: Rewards, returns: torch.Tensor,
                   losses: dict[str, torch.Tensor]) -> dict[str, float]:
        """The update's statistics, averaged over all processes so every process logs the same.

        Per-response figures are gathered as ``[B, K]`` rows of every process (one gather), then
        column means, with the rows and response tokens drawn (`rollout/samples`, `rollout/tokens`); the loss
        statistics and the value figures are reduced as per-process means.
        """
        per_row = {}
        if rewards.safety_penalty is not None:
            per_row = {"reward/safety_penalty": rewards.safety_penalty, "safety/p_unsafe": r.p_unsafe,
                       "safety/flagged_fraction": r.flagged.float()}
        non_score = rewards.non_score.sum(1)
        per_row.update({
            "reward/raw": r.scores,
            "reward/normalised": rewards.scores,
            "objective/kl": sequence_kl(rewards.kl, r.mask),
            "objective/non_score_reward": non_score,
            "objective/rlhf_reward": rewards.scores + non_score,
            "response/length": r.mask.sum(1),
            "response/eos_rate": r.has_eos,
        })
        columns = self.accelerator.gather_for_metrics(torch.stack([v.detach().float() for v in per_row.values()], dim=1))
        out = dict(zip(per_row, columns.mean(0).tolist()))
        # what the update drew over every process: the budget the comparison counts
        out["rollout/samples"] = columns.size(0)
        out["rollout/tokens"] = int(columns[:, list(per_row).index("response/length")].sum().item())
        means = torch.stack(list(losses.values()))
        values = {"value/explained_variance": explained_variance(r.values, returns, r.mask),
                  "value/mean": masked_mean(r.values, r.mask)}
        local = torch.cat([means, torch.stack(list(values.values())).to(means)])
        out.update(zip([*losses, *values], self.accelerator.reduce(local, "mean").tolist()))
        out["lr"] = self.scheduler.get_last_lr()[0]
        return out

    # ------------------------------------------------------------------ the loop
    def train(self, checkpoint_dir: Path,
              on_eval: Callable[[int, PreTrainedModel], dict] | None = None) -> None:
        """Run the remaining updates, evaluating and checkpointing on schedule.

        Pass ``on_eval`` on the main process only: its results live in the progress that the main
        process checkpoints, and sampling the same eval prompts on every process would only cost time.
        It receives the update and the policy with its full weights: every process enters
        :meth:`full_policy` at an evaluation (a gather under ZeRO-3 and FSDP), the main process evaluates.
        """
        with self.heap_frozen():
            self._train(checkpoint_dir, on_eval)

    def _train(self, checkpoint_dir: Path, on_eval: Callable[[int, PreTrainedModel], dict] | None) -> None:
        cfg = self.cfg
        bar = tqdm(total=self.num_updates, initial=self.progress.update, desc="PPO updates",
                   disable=not self.accelerator.is_main_process)
        while self.progress.update < self.num_updates:
            stats = self.step()
            self.accelerator.log({k: v for k, v in stats.items() if isinstance(v, float)}, step=self.progress.update)
            bar.update(1)
            bar.set_postfix(reward=f"{stats['reward/raw']:.3f}", kl=f"{stats['objective/kl']:.2f}",
                            beta=f"{stats['objective/beta']:.3f}")
            done = self.progress.update == self.num_updates
            if self.progress.update % cfg.eval_every == 0 or done:
                with self.full_policy() as policy:
                    if on_eval is not None:
                        with torch.random.fork_rng(devices=rng_devices()), self.autocast():
                            self.progress.evals.append(on_eval(self.progress.update, policy))
            if self.progress.update % cfg.save_every == 0 or done:
                self.save_checkpoint(checkpoint_dir)
        bar.close()

    def save_checkpoint(self, checkpoint_dir: Path) -> None:
        """Write the checkpoint under a hidden name and rename it when complete, so a run killed mid-write
        leaves only finished ``update-*`` folders for ``resume=true`` to pick from.

        Every process writes into the same folder (its RNG states; the main process the rest), so the
        rename waits for all of them, and the others wait for the rename before going on.
        """
        name = f"update-{self.progress.update:06d}"
        partial, target = checkpoint_dir / f".partial-{name}", checkpoint_dir / name
        if self.accelerator.is_main_process:
            for stale in checkpoint_dir.glob(".partial-*"):
                shutil.rmtree(stale, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(partial), safe_serialization=False)  # tied embeddings: no safetensors warning
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
            done = sorted(checkpoint_dir.glob("update-*"))
            for old in done[:-self.cfg.save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def load_checkpoint(self, path: Path) -> None:
        self.accelerator.load_state(str(path))
        log.info("resumed from %s at update %d (beta %.4f)", path, self.progress.update, self.kl_ctl.value)
