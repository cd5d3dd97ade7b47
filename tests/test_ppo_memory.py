"""What PPO keeps for the backward pass, counted tensor by tensor with ``saved_tensors_hooks``, and what it
leaves of the process when it is done (the garbage collector).

The logits are ``[rows, response length, vocabulary]``: at a real vocabulary (151,936) and 4 x 256 tokens a
float32 copy of them is 0.6 GB kept until the backward, so none may be saved; with gradient checkpointing
the rollout's kept forward must save a checkpointed graph, not every layer's activations.
"""

import gc
from collections import Counter

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from alignment.config import PolicyConfig, PPOStageConfig
from alignment.data.world import DemoWorld
from alignment.modeling import load_policy
from alignment.ppo.trainer import PPOTrainer
from alignment.stages.common import seed_everything

PROMPTS = [p.text for p in DemoWorld(0).prompts("train")]


class SavedTensors:
    """Every tensor autograd saves for the backward inside the ``with`` block: ``(dtype, shape)``."""

    def __init__(self) -> None:
        self.tensors: list[tuple[torch.dtype, tuple[int, ...]]] = []

    def __enter__(self) -> "SavedTensors":
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self.tensors.append((tensor.dtype, tuple(tensor.shape)))
        return tensor

    def bytes_by_dtype(self) -> Counter:
        out: Counter = Counter()
        for dtype, shape in self.tensors:
            out[dtype] += int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
        return out


@pytest.fixture
def fresh_accelerate():
    """accelerate's state is one per process: each test sets its own precision."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def trainer_for(path, accelerator: Accelerator, **settings) -> PPOTrainer:
    seed_everything(0)
    cfg = PPOStageConfig(**{"batch_size": 4, "mini_batch_size": 4, "ppo_epochs": 1, "value_model": "head",
                            **settings})
    cfg.generation.max_new_tokens = 16
    model, tok = load_policy(PolicyConfig(), path=str(path))
    return PPOTrainer(cfg, accelerator, model, str(path), tok, lambda p, t: np.array([-len(x) / 40 for x in t]),
                      0.0, 1.0, PROMPTS, seed=0, num_updates=1)


@pytest.mark.slow
def test_a_micro_batch_under_accelerates_bf16_saves_no_float32_copy_of_the_logits(smoke_sft, fresh_accelerate):
    trainer = trainer_for(smoke_sft / "sft" / "model", Accelerator(cpu=True, mixed_precision="bf16"),
                          micro_batch_size=2, mixed_precision="auto")
    assert trainer.compute_dtype == torch.bfloat16
    rollout = trainer.rollout(PROMPTS[:4])
    advantages, returns = trainer.advantages(rollout, trainer.rewards(rollout))
    with SavedTensors() as saved:  # one mini-batch of two micro-batches of two rows
        trainer.ppo_epochs(rollout, advantages, returns)
    logits_shape = (2, rollout.tokens.size(1), trainer.policy().config.vocab_size)
    logits = [dtype for dtype, shape in saved.tensors if shape == logits_shape]
    assert logits == [torch.bfloat16, torch.bfloat16], saved.tensors  # once per micro-batch, in the compute dtype
    vocabulary_wide = [shape for dtype, shape in saved.tensors if dtype == torch.float32 and shape[-1:] == logits_shape[-1:]]
    assert not vocabulary_wide, vocabulary_wide  # not even a float32 copy in pieces


@pytest.mark.slow
def test_the_rollouts_kept_forward_is_checkpointed_with_gradient_checkpointing(smoke_sft):
    """The rollout runs the policy in eval mode, where transformers does not checkpoint; the forward
    kept for the first update step (``micro_batch_size == batch_size``) must be checkpointed all the same."""
    saved = {}
    for checkpointing in (False, True):
        trainer = trainer_for(smoke_sft / "sft" / "model", Accelerator(cpu=True), gradient_checkpointing=checkpointing)
        assert trainer.forward.enabled
        with SavedTensors() as tensors:
            rollout = trainer.rollout(PROMPTS[:4])
        saved[checkpointing] = sum(tensors.bytes_by_dtype().values())
        # and the kept forward is still the first step's: the update goes on from it
        advantages, returns = trainer.advantages(rollout, trainer.rewards(rollout))
        assert np.isfinite(trainer.ppo_epochs(rollout, advantages, returns)["loss/total"].item())
    assert saved[True] < 0.5 * saved[False], saved


@pytest.mark.slow
def test_the_trainer_leaves_the_garbage_collector_as_it_found_it(smoke_sft, tmp_path):
    """Freezing the heap (gc.freeze) speeds the training loop up, but a pipeline goes on in the same
    process after PPO: whatever PPO froze is unfrozen when it returns."""
    assert gc.get_freeze_count() == 0
    trainer = trainer_for(smoke_sft / "sft" / "model", Accelerator(cpu=True))
    assert gc.get_freeze_count() == 0
    trainer.train(tmp_path / "checkpoints")
    assert trainer.progress.update == 1 and gc.get_freeze_count() == 0
