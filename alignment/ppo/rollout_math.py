"""Token-level helpers for a PPO rollout: log-probs, EOS truncation, masks and masked statistics.

A rollout is a batch of prompts (left-padded) and the responses the policy sampled for them (a
``[batch, response_length]`` tensor). Everything PPO computes per token is computed over the
*response* positions, and only over the real ones: the tokens up to and including the first EOS.
The functions here turn raw samples into that mask and provide the masked mean / variance /
whitening that the rest of :mod:`alignment.ppo` uses.

Conventions (as in "The N Implementation Details of RLHF with PPO", Huang et al. 2024, and TRL's
PPOTrainer up to 1.12):

* the mask is **position based**: a response's real tokens are a prefix of its row, ending at the
  first EOS (included) or at the last column when the policy never stopped. It is never derived
  from pad ids, so a pad token the policy happened to sample before its EOS is still an action;
* log-probs are computed from logits divided by the *sampling* temperature, so they are the
  log-probs of the distribution the tokens were actually drawn from;
* variance is unbiased (Bessel's correction), as TRL's ``masked_var``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
import torch.utils.checkpoint

#: Added to a variance before ``rsqrt`` in whitening, as TRL: keeps a constant batch finite.
WHITEN_EPS = 1e-8


# --------------------------------------------------------------------------------------------------
# Log-probabilities of the sampled tokens
# --------------------------------------------------------------------------------------------------

#: Positions per chunk of the log-softmax: bounds each float32 temporary at ``chunk * vocab`` values
#: (about 150 MB at a 151,936 vocabulary) whatever the batch and response length.
LOGPROB_CHUNK = 256


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0,
                         chunk: int = LOGPROB_CHUNK) -> torch.Tensor:
    """``log softmax(logits / temperature)[token]`` for each position, float32: shape ``[batch, length]``.

    ``logits[:, t]`` must be the logits that *predicted* ``tokens[:, t]`` (for a causal LM over
    ``prompt + response`` that is ``output.logits[:, context_length - 1 : -1]``).

    Why divide by the temperature: the responses were sampled from ``softmax(logits / T)``, so the
    importance ratio and the KL penalty must use that distribution, not the ``T = 1`` one (TRL does
    the same with ``logits /= temperature + 1e-7``; we refuse ``T <= 0`` instead of nudging it,
    because greedy decoding has no log-probs to speak of).

    Precision and memory: half-precision logits are cast to float32 *before* the division (bf16
    logits divided by 0.7 are off by up to 0.15 nat), and the importance ratio ``exp(new - old)`` is
    too sensitive for bf16 log-probs. The work runs over about ``chunk`` positions at a time: the
    chosen logit minus the ``logsumexp`` of its row (TRL's ``selective_log_softmax``), so neither a
    float32 copy of all the logits nor a full log-softmax is ever materialised, in the forward or
    the backward pass (:class:`_ChunkedLogprobs`).
    """
    return logprobs_and_entropy(logits, tokens, temperature, chunk, entropy=False)[0]


def logprobs_and_entropy(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0,
                         chunk: int = LOGPROB_CHUNK, entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`logprobs_from_logits` and, from the same pass over each chunk, the entropy of
    ``softmax(logits / temperature)`` per position (a statistic: no gradient flows through it).

    One exponential per logit gives the row's ``logsumexp`` and its softmax, where the log-probs
    and a separate entropy took three (what that cost is in docs/experiments.md).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to have log-probs, got {temperature}")
    if logits.shape[:-1] != tokens.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match tokens {tuple(tokens.shape)}")
    logprobs, row_entropy = _ChunkedLogprobs.apply(logits, tokens, temperature, chunk, entropy)
    return logprobs, row_entropy if entropy else None


class _ChunkedLogprobs(torch.autograd.Function):
    """The log-probs of :func:`logprobs_from_logits` and their exact gradient, both chunk by chunk.

    The gradient of ``l[token] / T - logsumexp(l / T)`` is ``(onehot(token) - softmax(l / T)) / T``;
    the backward pass writes it into one gradient tensor a chunk at a time from the saved row
    ``logsumexp``. Autograd through chunk views would instead recompute each chunk and give every
    chunk a zero-filled gradient the size of all the logits (a slice's backward), summed one by one:
    several logits-sized buffers and passes at a real vocabulary.
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, tokens: torch.Tensor, temperature: float,
                chunk: int, entropy: bool) -> tuple[torch.Tensor, torch.Tensor]:
        index = tokens.unsqueeze(-1).long()
        chosen, lse, entropies = [], [], []
        for part, idx in zip(position_chunks(logits, chunk), position_chunks(index, chunk)):
            part = as_float32(part)
            chosen.append(torch.gather(part, -1, idx).reshape(-1) / temperature)
            # logsumexp(l / T) by its own steps, keeping exp(l / T - max) for the entropy
            top = part.amax(dim=-1, keepdim=True)
            e = _scaled_exp(part, top / temperature, temperature)
            total = e.sum(dim=-1, keepdim=True)
            row = (top / temperature + total.log()).reshape(-1)
            lse.append(row)
            if entropy:  # H = lse - sum(softmax * l / T); the sum as one dot product per row, no temporary
                dot = (e.unsqueeze(-2) @ part.unsqueeze(-1)).reshape(-1)
                entropies.append(row - dot / (total.reshape(-1) * temperature))
        row_lse = torch.cat(lse).reshape(tokens.shape)
        ctx.save_for_backward(logits, index, row_lse)
        ctx.temperature, ctx.chunk = temperature, chunk
        row_entropy = torch.cat(entropies).reshape(tokens.shape) if entropy else row_lse.new_zeros(())
        ctx.mark_non_differentiable(row_entropy)
        return torch.cat(chosen).reshape(tokens.shape) - row_lse, row_entropy

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor, _grad_entropy: torch.Tensor | None
                 ) -> tuple[torch.Tensor | None, None, None, None, None]:
        logits, index, row_lse = ctx.saved_tensors
        temperature, chunk = ctx.temperature, ctx.chunk
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        pieces = (position_chunks(t, chunk) for t in (logits, index, row_lse.unsqueeze(-1), grad_out.unsqueeze(-1), grad))
        for part, idx, lse, go, out in zip(*pieces):
            # softmax(l / T) = exp(l / T - lse), times -grad: d/dl of -logsumexp
            g = _scaled_exp(as_float32(part), lse, temperature).mul_(-go)
            g.scatter_add_(-1, idx, go.to(g.dtype))                    # + d/dl of the chosen logit
            if temperature != 1.0:
                g.div_(temperature)
            out.copy_(g)
        return grad, None, None, None, None


def _scaled_exp(part: torch.Tensor, shift: torch.Tensor, temperature: float) -> torch.Tensor:
    """``exp(part / temperature - shift)`` in float32 as one new tensor (the later steps in place on
    it); the caller's chunk is never changed."""
    if temperature == 1.0:
        return torch.sub(part, shift).exp_()
    return torch.div(part, temperature).sub_(shift).exp_()


def as_float32(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits as float32; float32 and float64 as they are."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def per_chunk(fn: Callable[..., torch.Tensor], part: torch.Tensor, *args: Any) -> torch.Tensor:
    """``fn(part, *args)``; under autograd, recomputed in the backward pass (activation checkpointing)
    instead of keeping the chunk's float32 temporaries: the backward then holds one chunk's worth of
    vocabulary-sized float32 at a time, not the whole batch's."""
    if torch.is_grad_enabled() and part.requires_grad:
        return torch.utils.checkpoint.checkpoint(fn, part, *args, use_reentrant=False)
    return fn(part, *args)


def position_chunks(logits: torch.Tensor, chunk: int = LOGPROB_CHUNK) -> Iterator[torch.Tensor]:
    """The positions of ``[..., vocab]`` logits in order, about ``chunk`` at a time: as many whole rows
    of a ``[batch, length, vocab]`` tensor as fit in ``chunk`` positions (one slice for a small
    batch), or pieces of one row when a row alone is longer.

    Slices are views of the caller's tensor (a model's response logits are a non-contiguous slice,
    which ``reshape`` would copy whole), in the caller's dtype; flattening each slice's leading
    dimensions and concatenating them gives the positions in row-major order.
    """
    if logits.dim() == 1:
        logits = logits.unsqueeze(0)
    if logits.dim() > 2:
        rows = chunk // math.prod(logits.shape[1:-1])
        if rows >= 1:
            for start in range(0, logits.size(0), rows):
                yield logits[start:start + rows]
            return
        for sub in logits:
            yield from position_chunks(sub, chunk)
        return
    for start in range(0, logits.size(0), chunk):
        yield logits[start:start + chunk]


# --------------------------------------------------------------------------------------------------
# Truncation at the first EOS, masks and lengths
# --------------------------------------------------------------------------------------------------

class TruncatedResponses(NamedTuple):
    """Responses cut after their first EOS. All tensors share the batch dimension."""

    #: ``[batch, length]`` token ids; everything after the first EOS is the pad id.
    tokens: torch.Tensor
    #: ``[batch, length]`` bool; True on the real tokens (up to and including the first EOS).
    mask: torch.Tensor
    #: ``[batch]`` long; the number of real tokens (``mask.sum(1)``).
    lengths: torch.Tensor
    #: ``[batch]`` bool; whether the response stopped with an EOS (False: it hit the length limit).
    has_eos: torch.Tensor


def first_true_indices(bools: torch.Tensor) -> torch.Tensor:
    """Index of the first True along the last dim; the row length where a row has none."""
    length = bools.size(-1)
    positions = torch.arange(length, device=bools.device)
    return torch.where(bools, positions, length).min(dim=-1).values


def truncate_after_eos(responses: torch.Tensor, eos_token_id: int | Sequence[int],
                       pad_token_id: int) -> TruncatedResponses:
    """Keep each response up to and including its first EOS, and turn the rest into padding.

    Why: ``generate`` keeps sampling rows that finished until the longest one stops (or pads them,
    depending on the model), and a stop token can be sampled in the middle of a batch. Whatever
    comes after the first EOS is not part of the answer the reward model should judge, and must not
    receive gradient. ``eos_token_id`` may be a list (chat models often stop on several ids).
    A row without any EOS keeps all its tokens and is reported in ``has_eos`` (see
    :func:`apply_missing_eos_penalty`).
    """
    if responses.dim() != 2:
        raise ValueError(f"responses must be [batch, length], got shape {tuple(responses.shape)}")
    eos_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    if not eos_ids:
        raise ValueError("eos_token_id is empty: PPO needs a stop token to know where answers end")
    is_eos = torch.isin(responses, torch.tensor(eos_ids, device=responses.device))
    first_eos = first_true_indices(is_eos)  # == length when there is none
    has_eos = first_eos < responses.size(1)
    lengths = torch.where(has_eos, first_eos + 1, responses.size(1))
    mask = mask_from_lengths(lengths, responses.size(1))
    tokens = responses.masked_fill(~mask, pad_token_id)
    return TruncatedResponses(tokens=tokens, mask=mask, lengths=lengths, has_eos=has_eos)


def mask_from_lengths(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """``[batch, width]`` bool mask that is True on the first ``lengths[i]`` positions of row ``i``."""
    positions = torch.arange(width, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last True of each row of a ``[batch, length]`` mask; -1 for a row with none.

    Works for any padding side, so it serves both a response mask (the position of the EOS, where
    the score is paid) and the attention mask of a full ``prompt + response`` sequence (the token a
    causal reward model reads its score from).
    """
    mask = mask.bool()
    length = mask.size(-1)
    return length - 1 - first_true_indices(mask.flip(-1))


def apply_missing_eos_penalty(scores: torch.Tensor, has_eos: torch.Tensor,
                              penalty: float | None) -> torch.Tensor:
    """Subtract ``penalty`` from the score of every response that never produced an EOS.

    Why: without it the policy can learn to ramble to the length limit, where the reward model is
    least reliable (Huang et al. 2024, "EOS trick"). TRL's PPOTrainer subtracts (``missing_eos_penalty``);
    its older ``non_eos_penalty`` *replaced* the score with a constant. We subtract, so the penalty
    is a fixed cost and the reward model still ranks unfinished answers among themselves.
    ``None`` disables it. Returns a new tensor.
    """
    if penalty is None:
        return scores
    if penalty < 0:
        raise ValueError(f"missing_eos_penalty is subtracted and must be >= 0, got {penalty}")
    return torch.where(has_eos.to(scores.device), scores, scores - penalty)


# --------------------------------------------------------------------------------------------------
# Masked statistics
# --------------------------------------------------------------------------------------------------

def zero_outside(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``values`` where ``mask`` is True, 0 elsewhere: selected with ``where``, not multiplied by the
    mask, so a NaN or inf in a padded position does not leak (``nan * 0`` is NaN)."""
    return torch.where(mask.bool(), values, torch.zeros((), dtype=values.dtype, device=values.device))


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is True (over ``dim``, or over all).

    Masked positions never contribute, even if they hold NaN or inf (:func:`zero_outside`).
    """
    mask = mask.bool()
    total = zero_outside(values, mask)
    count = mask.sum() if dim is None else mask.sum(dim)
    return (total.sum() if dim is None else total.sum(dim)) / count


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the masked values; unbiased (Bessel's ``n / (n - 1)``) by default, as TRL.

    Raises when the mask selects fewer than 2 values for the unbiased estimate (TRL would return
    inf or NaN there, which then silently poisons the whole update).
    """
    mask = mask.bool()
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        count = int(mask.sum())
        if count < 2:
            raise ValueError(f"the mask selects {count} value(s); an unbiased variance needs at least 2 "
                             "(use a larger batch or mini-batch)")
        variance = variance * (count / (count - 1))
    return variance


#: ``reduce_sum(t)``: ``t`` summed elementwise over every process (an all-reduce); ``None``: this process only.
ReduceSum = Callable[[torch.Tensor], torch.Tensor]


def global_masked_mean_var(values: torch.Tensor, mask: torch.Tensor,
                           reduce_sum: ReduceSum) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased variance of the masked values of *every* process (OpenRLHF and verl whiten
    over the whole batch, not per process): one all-reduce of ``(sum, count)``, then one of the summed
    squared deviations from the global mean (two passes: no ``E[x^2] - E[x]^2`` cancellation)."""
    mask = mask.bool()
    total, count = reduce_sum(torch.stack([zero_outside(values, mask).sum(), mask.sum().to(values.dtype)]))
    if int(count) < 2:
        raise ValueError(f"the mask selects {int(count)} value(s) over all processes; an unbiased variance "
                         "needs at least 2 (use a larger batch or mini-batch)")
    mean = total / count
    squares = reduce_sum(zero_outside((values - mean) ** 2, mask).sum())
    return mean, squares / (count - 1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
                  reduce_sum: ReduceSum | None = None) -> torch.Tensor:
    """``(values - mean) / sqrt(var + 1e-8)`` over the masked values; masked positions become 0.

    ``shift_mean=False`` adds the mean back after scaling (``(v - mean) / std + mean``, as TRL): the
    spread becomes 1 but the mean is kept. That is how rewards are whitened, since moving their mean
    would change what the policy is paid per token, and so how long it wants its answers to be.
    TRL leaves garbage at masked positions and zeroes it afterwards; we return zeros directly.
    With ``reduce_sum`` the mean and variance are those of all processes' values
    (:func:`global_masked_mean_var`).
    """
    mask = mask.bool()
    if reduce_sum is None:
        mean, var = masked_mean(values, mask), masked_var(values, mask)
    else:
        mean, var = global_masked_mean_var(values, mask, reduce_sum)
    whitened = (values - mean) * torch.rsqrt(var + WHITEN_EPS)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask, whitened, torch.zeros((), dtype=whitened.dtype, device=whitened.device))
