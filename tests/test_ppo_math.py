"""The PPO math of :mod:`alignment.ppo` against values worked out by hand in the comments."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoTokenizer

from alignment.modeling import minilm_path
from alignment.ppo import (
    AdaptiveKLController,
    FixedKLController,
    apply_missing_eos_penalty,
    compute_gae,
    compute_rewards,
    entropy_from_logits,
    explained_variance,
    kl_k1,
    kl_k2,
    kl_k3,
    last_token_index,
    logprobs_from_logits,
    make_kl_controller,
    masked_mean,
    masked_var,
    masked_whiten,
    normalise_scores,
    per_token_kl,
    policy_loss,
    ppo_loss,
    safety_penalty,
    sequence_kl,
    truncate_after_eos,
    value_loss,
    whiten_advantages,
    whiten_rewards,
)
from alignment.reward.encoding import encode_for_reward_model

LN2 = math.log(2.0)


def close(actual: torch.Tensor, expected, atol: float = 1e-6) -> None:
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0, equal_nan=True)


# --------------------------------------------------------------------------------------------------
# rollout_math: log-probs
# --------------------------------------------------------------------------------------------------

def test_logprobs_from_logits_at_temperature_one_and_two():
    # logits = log([1, 2, 1]) -> softmax = [1/4, 1/2, 1/4]
    logits = torch.log(torch.tensor([[[1.0, 2.0, 1.0], [1.0, 2.0, 1.0]]]))
    tokens = torch.tensor([[1, 0]])
    close(logprobs_from_logits(logits, tokens), [[math.log(0.5), math.log(0.25)]])
    # T = 2: logits / 2 = log([1, sqrt2, 1]) -> p(1) = sqrt2 / (2 + sqrt2) = sqrt2 - 1, p(0) = 1 / (2 + sqrt2)
    before = logits.clone()
    out = logprobs_from_logits(logits, tokens, temperature=2.0)
    close(out, [[math.log(math.sqrt(2) - 1), -math.log(2 + math.sqrt(2))]])
    assert torch.equal(logits, before), "the caller's logits must not be scaled in place"


def test_logprobs_from_logits_half_precision_is_float32_and_bad_input_fails():
    logits = torch.log(torch.tensor([[[1.0, 2.0, 1.0]]])).to(torch.bfloat16)
    out = logprobs_from_logits(logits, torch.tensor([[1]]))
    assert out.dtype == torch.float32
    close(out, [[math.log(0.5)]], atol=1e-2)
    with pytest.raises(ValueError, match="temperature"):
        logprobs_from_logits(logits, torch.tensor([[1]]), temperature=0.0)
    with pytest.raises(ValueError, match="do not match"):
        logprobs_from_logits(logits, torch.tensor([[1, 2]]))


# --------------------------------------------------------------------------------------------------
# rollout_math: EOS truncation, last token, missing-EOS penalty
# --------------------------------------------------------------------------------------------------

def test_truncate_after_first_eos():
    eos, pad = 2, 0
    responses = torch.tensor([[5, 2, 9, 2, 7],    # EOS at 1: keep [5, 2], the second EOS is junk
                              [5, 6, 7, 8, 3],    # no EOS: all 5 tokens are real
                              [2, 4, 4, 4, 4],    # EOS first: a 1-token answer
                              [0, 3, 2, 4, 4]])   # a sampled pad before the EOS is still an action
    out = truncate_after_eos(responses, eos, pad)
    assert out.tokens.tolist() == [[5, 2, 0, 0, 0], [5, 6, 7, 8, 3], [2, 0, 0, 0, 0], [0, 3, 2, 0, 0]]
    assert out.lengths.tolist() == [2, 5, 1, 3]
    assert out.has_eos.tolist() == [True, False, True, True]
    assert out.mask.tolist() == [[True, True, False, False, False], [True] * 5,
                                 [True, False, False, False, False], [True, True, True, False, False]]
    assert responses[0].tolist() == [5, 2, 9, 2, 7], "the input must not change"


def test_truncate_with_several_stop_ids():
    out = truncate_after_eos(torch.tensor([[5, 6, 7, 8, 3]]), [2, 8], pad_token_id=0)
    assert out.tokens.tolist() == [[5, 6, 7, 8, 0]]  # 8 is a stop id too
    assert out.lengths.tolist() == [4] and out.has_eos.tolist() == [True]


def test_last_token_index_for_right_and_left_padding():
    mask = torch.tensor([[1, 1, 0, 0],   # right-padded response: last real token at 1
                         [1, 1, 1, 1],   # full row: 3
                         [0, 0, 1, 1],   # left-padded attention mask: 3
                         [0, 1, 1, 0],   # 2
                         [0, 0, 0, 0]])  # nothing real: -1
    assert last_token_index(mask).tolist() == [1, 3, 3, 2, -1]


def test_missing_eos_penalty_is_subtracted_only_without_eos():
    scores = torch.tensor([1.0, 2.0, -0.5])
    has_eos = torch.tensor([True, False, False])
    close(apply_missing_eos_penalty(scores, has_eos, 1.0), [1.0, 1.0, -1.5])
    close(apply_missing_eos_penalty(scores, has_eos, None), [1.0, 2.0, -0.5])
    with pytest.raises(ValueError, match=">= 0"):
        apply_missing_eos_penalty(scores, has_eos, -1.0)


# --------------------------------------------------------------------------------------------------
# rollout_math: masked statistics
# --------------------------------------------------------------------------------------------------

VALUES = torch.tensor([[1.0, 2.0, 3.0, float("nan")], [4.0, 100.0, 0.0, 0.0]])
MASK = torch.tensor([[True, True, True, False], [True, False, False, False]])


def test_masked_mean_and_var():
    # selected {1, 2, 3, 4}: mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5
    close(masked_mean(VALUES, MASK), 2.5)  # the NaN and the 100 are masked out
    close(masked_mean(VALUES, MASK, dim=1), [2.0, 4.0])
    close(masked_var(VALUES, MASK, unbiased=False), 5 / 4)
    close(masked_var(VALUES, MASK), 5 / 3)  # Bessel: 5 / (4 - 1)
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(VALUES, torch.tensor([[True, False, False, False], [False] * 4]))


def test_masked_whiten():
    # std = sqrt(5/3) = 1.2909944; (v - 2.5) / std = -1.1618950, -0.3872983, 0.3872983, 1.1618950
    std = math.sqrt(5 / 3)
    z = [(v - 2.5) / std for v in (1, 2, 3, 4)]
    close(masked_whiten(VALUES, MASK), [[z[0], z[1], z[2], 0.0], [z[3], 0.0, 0.0, 0.0]])
    # shift_mean=False adds the mean 2.5 back: 1.3381050, 2.1127017, 2.8872983, 3.6618950
    close(masked_whiten(VALUES, MASK, shift_mean=False),
          [[z[0] + 2.5, z[1] + 2.5, z[2] + 2.5, 0.0], [z[3] + 2.5, 0.0, 0.0, 0.0]])


# --------------------------------------------------------------------------------------------------
# kl: estimators and controllers
# --------------------------------------------------------------------------------------------------

def test_kl_estimators_on_known_probabilities():
    # token a: pi = 0.5, ref = 0.25;  token b: pi = 0.25, ref = 0.5;  token c: padding
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.9]]))
    ref = torch.log(torch.tensor([[0.25, 0.5, 0.1]]))
    mask = torch.tensor([[True, True, False]])
    # k1 = log(pi / ref): ln2, -ln2
    close(kl_k1(logp, ref)[:, :2], [[LN2, -LN2]])
    # k2 = (log ratio)^2 / 2: 0.2402265 both
    close(kl_k2(logp, ref)[:, :2], [[LN2**2 / 2, LN2**2 / 2]])
    # k3 = (r - 1) - ln r, r = ref / pi:  a: r = 0.5 -> -0.5 + ln2 = 0.1931472;  b: r = 2 -> 1 - ln2 = 0.3068528
    close(kl_k3(logp, ref)[:, :2], [[LN2 - 0.5, 1 - LN2]])
    close(per_token_kl(logp, ref, "k3", mask), [[LN2 - 0.5, 1 - LN2, 0.0]])
    # per sequence: k1 sums to ln2 - ln2 = 0, k3 to (ln2 - 0.5) + (1 - ln2) = 0.5 (the pad costs nothing)
    close(sequence_kl(per_token_kl(logp, ref, "k1", mask)), [0.0])
    close(sequence_kl(per_token_kl(logp, ref, "k3"), mask), [0.5])
    with pytest.raises(ValueError, match="unknown KL estimator"):
        per_token_kl(logp, ref, "k4")


def test_adaptive_kl_controller_over_two_updates():
    ctl = AdaptiveKLController(init_beta=0.1, target=6.0, horizon=10_000)
    # KL 9: error = 9/6 - 1 = 0.5, clipped to 0.2; beta = 0.1 * (1 + 0.2 * 256 / 10000) = 0.1 * 1.00512 = 0.100512
    assert ctl.update(9.0, n_steps=256) == pytest.approx(0.100512, abs=1e-12)
    # KL 5.4: error = 0.9 - 1 = -0.1 (inside the clip); beta = 0.100512 * (1 - 0.1 * 0.0256)
    #       = 0.100512 * 0.99744 = 0.10025468928
    assert ctl.update(torch.tensor(5.4, dtype=torch.float64), n_steps=256) == pytest.approx(0.10025468928, abs=1e-12)
    assert ctl.value == pytest.approx(0.10025468928, abs=1e-12)


def test_adaptive_kl_controller_resumes_exactly():
    straight = AdaptiveKLController(0.1, 6.0, 10_000)
    straight.update(9.0, 256)
    state = json.loads(json.dumps(straight.state_dict()))  # survives a JSON checkpoint
    resumed = AdaptiveKLController(0.5, 1.0, 1.0)  # other settings: the state must win
    resumed.load_state_dict(state)
    assert resumed.update(5.4, 256) == straight.update(5.4, 256)  # bit-identical
    assert resumed.state_dict() == straight.state_dict()


def test_fixed_kl_controller_and_factory():
    ctl = FixedKLController(0.05)
    assert ctl.update(100.0, 256) == 0.05 and ctl.value == 0.05
    other = FixedKLController(0.2)
    other.load_state_dict(ctl.state_dict())
    assert other.value == 0.05
    with pytest.raises(ValueError, match="cannot load"):
        AdaptiveKLController(0.1, 6.0, 10_000).load_state_dict(ctl.state_dict())
    assert isinstance(make_kl_controller(0.05), FixedKLController)
    assert isinstance(make_kl_controller(0.05, adaptive=True, target=6.0), AdaptiveKLController)
    with pytest.raises(ValueError, match="target"):
        make_kl_controller(0.05, adaptive=True)


# --------------------------------------------------------------------------------------------------
# advantages: rewards, GAE, whitening
# --------------------------------------------------------------------------------------------------

def test_normalise_scores():
    # (s - 1) / 2: 3 -> 1, -1 -> -1, 11 -> 5; clip 2 -> 5 becomes 2
    scores = torch.tensor([3.0, -1.0, 11.0])
    close(normalise_scores(scores, mean=1.0, std=2.0), [1.0, -1.0, 5.0])
    close(normalise_scores(scores, mean=1.0, std=2.0, clip=2.0), [1.0, -1.0, 2.0])


def test_safety_penalty_is_the_coefficient_times_p_unsafe():
    # coef 2: P(unsafe) 0 -> 0, 0.25 -> 0.5, 0.5 -> 1, 1 -> 2; normalised scores [1, 1, 0, -1] become [1, 0.5, -1, -3]
    p_unsafe = torch.tensor([0.0, 0.25, 0.5, 1.0])
    penalty = safety_penalty(p_unsafe, 2.0)
    close(penalty, [0.0, 0.5, 1.0, 2.0])
    close(torch.tensor([1.0, 1.0, 0.0, -1.0]) - penalty, [1.0, 0.5, -1.0, -3.0])
    close(safety_penalty(p_unsafe, 0.0), [0.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=">= 0"):
        safety_penalty(p_unsafe, -1.0)
    with pytest.raises(ValueError, match="within"):
        safety_penalty(torch.tensor([1.5]), 1.0)


def test_rewards_are_kl_penalty_plus_score_at_last_real_token():
    scores = torch.tensor([1.0, 2.0])
    kl = torch.tensor([[0.2, 0.4, 0.6], [0.1, -0.2, 9.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    rewards, non_score = compute_rewards(scores, kl, mask, beta=0.5)
    # -0.5 * kl: [-0.1, -0.2, -0.3] and [-0.05, 0.1, (pad) 0]
    close(non_score, [[-0.1, -0.2, -0.3], [-0.05, 0.1, 0.0]])
    # + score at the last real token: index 2 for row 0, index 1 (not the pad after it) for row 1
    close(rewards, [[-0.1, -0.2, 0.7], [-0.05, 2.1, 0.0]])
    with pytest.raises(ValueError, match="no real token"):
        compute_rewards(scores, kl, torch.tensor([[True, True, True], [False, False, False]]), 0.5)


def test_gae_on_a_three_token_sequence_gamma_1_lambda_095():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 99.0]])
    values = torch.tensor([[0.5, 0.2, 0.4], [1.0, 1.0, 99.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    adv, ret = compute_gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # row 0:  t=2: delta = 1 + 0 - 0.4 = 0.6                  A2 = 0.6
    #         t=1: delta = 0 + 0.4 - 0.2 = 0.2                A1 = 0.2 + 0.95 * 0.6 = 0.77
    #         t=0: delta = 0 + 0.2 - 0.5 = -0.3               A0 = -0.3 + 0.95 * 0.77 = 0.4315
    # row 1 (the 99s are padding, read as 0):
    #         t=1: delta = 2 + 0 - 1 = 1                      A1 = 1
    #         t=0: delta = 0 + 1 - 1 = 0                      A0 = 0.95 * 1 = 0.95
    close(adv, [[0.4315, 0.77, 0.6], [0.95, 1.0, 0.0]])
    # returns = advantages + values: [0.9315, 0.97, 1.0] and [1.95, 2.0, 0 (pad)]
    close(ret, [[0.9315, 0.97, 1.0], [1.95, 2.0, 0.0]])


def test_gae_with_discount_uses_gamma_and_lambda_in_their_places():
    rewards, values = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.2, 0.4]])
    adv, ret = compute_gae(rewards, values, torch.ones(1, 3, dtype=torch.bool), gamma=0.9, lam=0.5)
    # t=2: delta = 1 - 0.4 = 0.6                         A2 = 0.6
    # t=1: delta = 0.9 * 0.4 - 0.2 = 0.16                A1 = 0.16 + 0.45 * 0.6 = 0.43
    # t=0: delta = 0.9 * 0.2 - 0.5 = -0.32               A0 = -0.32 + 0.45 * 0.43 = -0.1265
    close(adv, [[-0.1265, 0.43, 0.6]])
    close(ret, [[0.3735, 0.63, 1.0]])


def test_advantage_and_reward_whitening():
    x = torch.tensor([[1.0, 3.0], [5.0, 42.0]])
    mask = torch.tensor([[True, True], [True, False]])
    # {1, 3, 5}: mean 3, unbiased var (4 + 0 + 4) / 2 = 4, std 2 -> -1, 0, 1 (pad 0)
    close(whiten_advantages(x, mask), [[-1.0, 0.0], [1.0, 0.0]])
    # rewards keep their mean: -1 + 3, 0 + 3, 1 + 3
    close(whiten_rewards(x, mask), [[2.0, 3.0], [4.0, 0.0]])


# --------------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------------

# four real tokens and a masked one holding junk: its ratio e^1000 overflows to inf, and must leave no
# NaN in the loss or the gradient
RATIOS = [1.5, 1.1, 0.5, 1.5]
ADVANTAGES = torch.tensor([[1.0, 1.0, -2.0, -2.0, 7.0]])
LOSS_MASK = torch.tensor([[True, True, True, True, False]])


def _logprobs():
    old = torch.tensor([[-1.0, -1.0, -1.0, -1.0, -1000.0]])
    new = (old + torch.log(torch.tensor([RATIOS + [1.0]]))).clone()
    new[0, 4] = 0.0
    return new.requires_grad_(True), old


def test_clipped_policy_loss_where_clipping_is_and_is_not_active():
    new, old = _logprobs()
    loss, stats = policy_loss(new, old, ADVANTAGES, LOSS_MASK, cliprange=0.2)
    # token  A   ratio  -A*ratio  -A*clip(ratio, 0.8, 1.2)  max    clipped?
    #   0    1   1.5    -1.5      -1.2                      -1.2   yes
    #   1    1   1.1    -1.1      -1.1                      -1.1   no (inside the range)
    #   2   -2   0.5     1.0       1.6                       1.6   yes
    #   3   -2   1.5     3.0       2.4                       3.0   no (pessimistic side)
    # loss = (-1.2 - 1.1 + 1.6 + 3.0) / 4 = 0.575; clipfrac = 2 / 4
    close(loss.detach(), 0.575)
    close(stats["clipfrac"], 0.5)
    # approxkl = 0.5 * mean(log(ratio)^2) = 0.5 * (2 * ln1.5^2 + ln1.1^2 + ln0.5^2) / 4 = 0.1022926
    logs = [math.log(r) for r in RATIOS]
    close(stats["approxkl"], 0.5 * sum(x * x for x in logs) / 4)
    # k3 = mean((r - 1) - ln r) = (0.0945349 + 0.0046898 + 0.1931472 + 0.0945349) / 4 = 0.0967267
    close(stats["approxkl_k3"], sum(r - 1 - x for r, x in zip(RATIOS, logs, strict=True)) / 4)
    close(stats["ratio"], 1.15)  # (1.5 + 1.1 + 0.5 + 1.5) / 4
    # gradient d loss / d logprob = -A * ratio / 4 where the unclipped term is active, else 0:
    # token 1: -1.1 / 4 = -0.275, token 3: 3.0 / 4 = 0.75; clipped tokens and the pad: 0
    loss.backward()
    close(new.grad, [[0.0, -0.275, 0.0, 0.75, 0.0]])


def test_clipped_policy_loss_inactive_at_the_first_step():
    old = torch.tensor([[-1.0, -2.0, -0.5]])
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    loss, stats = policy_loss(old.clone(), old, adv, torch.ones(1, 3, dtype=torch.bool))
    # ratio 1 everywhere: loss = -mean(A) = -(1 - 1 + 2) / 3, nothing clipped, no KL
    close(loss, -2 / 3)
    close(stats["clipfrac"], 0.0)
    close(stats["approxkl"], 0.0)
    close(stats["ratio"], 1.0)


VPRED = torch.tensor([[1.0, 0.6, 0.0, 2.0, 5.0]])
OLD_VALUES = torch.tensor([[0.5, 0.5, 0.5, 1.0, 0.0]])
RETURNS = torch.tensor([[1.2, 0.0, 0.0, 1.0, -5.0]])


def test_clipped_value_loss():
    loss, stats = value_loss(VPRED, OLD_VALUES, RETURNS, LOSS_MASK, cliprange_value=0.2)
    # token  V    V_old  R    clip(V)  (V-R)^2  (clip-R)^2  max    clipped?
    #   0    1.0  0.5    1.2  0.7      0.04     0.25        0.25   yes
    #   1    0.6  0.5    0.0  0.6      0.36     0.36        0.36   no (inside the range)
    #   2    0.0  0.5    0.0  0.3      0.00     0.09        0.09   yes
    #   3    2.0  1.0    1.0  1.2      1.00     0.04        1.00   no
    # loss = 0.5 * (0.25 + 0.36 + 0.09 + 1.0) / 4 = 0.2125; clipfrac = 2 / 4
    close(loss, 0.2125)
    close(stats["clipfrac"], 0.5)


def test_entropy_from_logits():
    # uniform over 4: ln 4;  p = [1/2, 1/4, 1/4]: -(1/2 ln 1/2 + 2 * 1/4 ln 1/4) = 1.5 ln 2; shift-invariant
    logits = torch.stack([torch.zeros(3), torch.log(torch.tensor([0.5, 0.25, 0.25])) + 10.0])
    close(entropy_from_logits(torch.zeros(4)), math.log(4))
    close(entropy_from_logits(logits)[1], 1.5 * LN2, atol=1e-5)


def test_explained_variance():
    returns = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    close(explained_variance(returns, returns, mask), 1.0)
    close(explained_variance(torch.zeros(1, 4), returns, mask), 0.0)
    # residuals [-1, 1, -1, 1]: var 4/3; var(returns) = 5/3 -> 1 - 0.8 = 0.2
    close(explained_variance(returns + torch.tensor([[1.0, -1.0, 1.0, -1.0]]), returns, mask), 0.2)
    assert math.isnan(float(explained_variance(torch.zeros(1, 4), torch.ones(1, 4), mask)))


def test_ppo_loss_combines_policy_value_and_entropy():
    new, old = _logprobs()
    kwargs = dict(values=VPRED, old_values=OLD_VALUES, returns=RETURNS, mask=LOSS_MASK,
                  cliprange=0.2, cliprange_value=0.2, vf_coef=0.1)
    loss, stats = ppo_loss(new, old, ADVANTAGES, **kwargs)
    # 0.575 + 0.1 * 0.2125 = 0.59625
    close(loss.detach(), 0.59625)
    assert set(stats) == {"loss/policy", "loss/value", "loss/total", "policy/clipfrac", "policy/approxkl",
                          "policy/approxkl_k3", "policy/ratio", "value/clipfrac"}
    close(stats["loss/policy"], 0.575)
    close(stats["value/clipfrac"], 0.5)
    assert not any(v.requires_grad for v in stats.values())
    # uniform logits over 4 tokens: entropy ln 4 = 1.3862944; bonus 0.01 -> 0.59625 - 0.0138629 = 0.5823871
    logits = torch.zeros(1, 5, 4)
    loss, stats = ppo_loss(new, old, ADVANTAGES, logits=logits, entropy_coef=0.01, **kwargs)
    close(loss.detach(), 0.59625 - 0.01 * math.log(4))
    close(stats["policy/entropy"], math.log(4))
    with pytest.raises(ValueError, match="logits"):
        ppo_loss(new, old, ADVANTAGES, entropy_coef=0.01, **kwargs)


# --------------------------------------------------------------------------------------------------
# the reward model's own encoding of (prompt, response) texts (MiniLM WordPiece)
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm_tok():
    return AutoTokenizer.from_pretrained(minilm_path())


def test_encode_for_reward_model_as_a_text_pair_right_padded(minilm_tok):
    enc = encode_for_reward_model(["How do I bake bread?", "Hi?"], ["Mix flour and water.", "Yes."], minilm_tok,
                                  max_length=64, format="pair", padding_side="right")
    row0 = ["[CLS]", "how", "do", "i", "ba", "##ke", "bread", "?", "[SEP]", "mix", "flour", "and", "water", ".", "[SEP]"]
    row1 = ["[CLS]", "hi", "?", "[SEP]", "yes", ".", "[SEP]"] + ["[PAD]"] * 8  # right-padded to 15
    assert [minilm_tok.convert_ids_to_tokens(r) for r in enc["input_ids"].tolist()] == [row0, row1]
    assert enc["attention_mask"].tolist() == [[1] * 15, [1] * 7 + [0] * 8]
    assert enc["token_type_ids"].tolist() == [[0] * 9 + [1] * 6, [0] * 4 + [1] * 3 + [0] * 8]


def test_encode_for_reward_model_truncates_the_prompt_from_the_left(minilm_tok):
    def tokens(max_length: int) -> list[str]:
        enc = encode_for_reward_model(["How do I bake bread?"], ["Mix flour and water."], minilm_tok, max_length,
                                      format="pair")
        assert enc["input_ids"].shape[1] <= max_length
        return minilm_tok.convert_ids_to_tokens(enc["input_ids"][0].tolist())

    answer = ["mix", "flour", "and", "water", "."]
    # 15 tokens in full; 12 -> drop 3 prompt tokens from the left ("how", "do", "i")
    assert tokens(12) == ["[CLS]", "ba", "##ke", "bread", "?", "[SEP]", *answer, "[SEP]"]
    # 8 -> the whole 7-token prompt goes, the answer stays whole
    assert tokens(8) == ["[CLS]", "[SEP]", *answer, "[SEP]"]
    # 7 -> only now the answer loses its last token
    assert tokens(7) == ["[CLS]", "[SEP]", "mix", "flour", "and", "water", "[SEP]"]
    # 2 -> nothing but the format's own tokens; 1 cannot hold even those
    assert tokens(2) == ["[CLS]", "[SEP]"]
    with pytest.raises(ValueError, match="max_length"):
        tokens(1)


def test_encode_for_reward_model_concat_and_left_padding(minilm_tok):
    enc = encode_for_reward_model(["How do I bake bread?", "Hi?"], ["Mix flour and water.", "Yes."], minilm_tok,
                                  max_length=32, format="concat", separator="\n", padding_side="left")
    row0 = ["[CLS]", "how", "do", "i", "ba", "##ke", "bread", "?", "mix", "flour", "and", "water", ".", "[SEP]"]
    row1 = ["[PAD]"] * 8 + ["[CLS]", "hi", "?", "yes", ".", "[SEP]"]
    assert [minilm_tok.convert_ids_to_tokens(r) for r in enc["input_ids"].tolist()] == [row0, row1]
    assert enc["attention_mask"].tolist() == [[1] * 14, [0] * 8 + [1] * 6]
