"""What DeepSpeed ZeRO-2/3 and FSDP2 need from PPO, which has no data loader and samples mid-training.

- **Start**: DeepSpeed sizes its engine from the data loader passed to ``prepare``; PPO has none, so the
  micro-batch, the accumulation steps and the gradient clipping go into its config first
  (:func:`configure_deepspeed`).
- **Backward**: DeepSpeed steps its own optimizer inside ``backward`` at an accumulation boundary and
  divides the loss by its accumulation steps; PPO weights each micro-batch by its share of the
  mini-batch's tokens and marks the boundary itself (:func:`backward`).
- **Generate and evaluate**: under ZeRO-3 and FSDP a process holds a shard of each weight, and their
  forward hooks gather the rest *per module call*; sampling calls the policy token by token and each
  process stops at its own EOS, so the processes would issue different numbers of gathers and hang.
  :func:`full_weights` gathers every weight once, on every process, and silences those hooks until
  it exits.
- **Export**: the full weights exist only as every process's shards put together, so
  ``accelerator.get_state_dict`` is a collective that every process must call (ZeRO-3 needs
  ``zero3_save_16bit_model: true``; under FSDP only the main process receives the weights).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, InitProcessGroupKwargs
from torch import nn

from alignment.errors import UserError


def launch_options(collective_timeout_s: float | None = None) -> dict[str, Any]:
    """``Accelerator`` options for this launch: how several CPU processes join, and how long a collective
    may wait (``collective_timeout_s``; ``None``: torch's default).

    The timeout: PPO evaluates on the main process alone while the others wait in their next collective,
    and torch's default (10 minutes under NCCL) is shorter than one evaluation of a large policy.

    On a machine without a GPU: ``conf/accelerate/cpu_2proc.yaml`` launches through torchrun like a
    multi-GPU job with the GPUs hidden (accelerate's own multi-CPU launch needs mpirun); accelerate then
    finds no GPU and, unless asked for the CPU, runs every process as an independent single-process job.
    Under DeepSpeed the CPU must *not* be asked for (accelerate would drop DeepSpeed); DeepSpeed's CPU
    accelerator joins the processes, and accelerate must be told that their backend is gloo to count
    them. accelerate 1.16 builds FSDP for GPU-like devices only: asked for the CPU it silently runs DDP,
    so that is refused.
    """
    cpu_processes = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    if cpu_processes and not deepspeed and os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        raise UserError("accelerate builds FSDP on GPUs only: on CPU processes use conf/accelerate/cpu_2proc.yaml "
                        "(DDP) or a DeepSpeed config (zero2.yaml, zero3.yaml)")
    group: dict[str, Any] = {"backend": "gloo"} if cpu_processes and deepspeed else {}
    if collective_timeout_s is not None:
        group["timeout"] = timedelta(seconds=collective_timeout_s)
    options: dict[str, Any] = {"cpu": True} if cpu_processes and not deepspeed else {}
    if group:
        options["kwargs_handlers"] = [InitProcessGroupKwargs(**group)]
    return options


def zero_stage(accelerator: Accelerator) -> int | None:
    """DeepSpeed's ZeRO stage, ``None`` when DeepSpeed is not the engine."""
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return None
    return int(accelerator.state.deepspeed_plugin.zero_stage)


def is_sharded(accelerator: Accelerator) -> bool:
    """Whether a process holds only a shard of each weight (ZeRO-3, FSDP): gathering is then a collective."""
    return accelerator.distributed_type == DistributedType.FSDP or zero_stage(accelerator) == 3


def check_engine(accelerator: Accelerator) -> None:
    """Refuse FSDP1: only FSDP2's per-module ``unshard`` lets generation run on gathered weights."""
    if accelerator.distributed_type == DistributedType.FSDP and not accelerator.is_fsdp2:
        raise UserError("PPO under FSDP needs fsdp_version: 2 in the accelerate config (conf/accelerate/fsdp.yaml)")


def load_models_whole(accelerator: Accelerator) -> None:
    """Under ZeRO-3, make transformers load models whole (call before loading any); a no-op otherwise.

    accelerate 1.16 registers its DeepSpeed config with transformers whatever ``zero3_init_flag`` says,
    and transformers then loads every model partitioned (``zero.Init``) and generates with
    ``synced_gpus`` (an all-reduce per token). PPO's frozen reference, reward model and evaluation
    copies are never prepared, so their shards would never be gathered, and a main-process-only
    evaluation would wait forever for the others. ``prepare`` shards the trained module by itself.
    """
    if zero_stage(accelerator) == 3:
        from transformers.integrations import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()


def check_whole(accelerator: Accelerator, model: nn.Module) -> None:
    """Refuse a model that transformers loaded partitioned under ZeRO-3 (:func:`load_models_whole` not called)."""
    if zero_stage(accelerator) == 3 and any(hasattr(p, "ds_id") for p in model.parameters()):
        raise RuntimeError("the policy was loaded partitioned by ZeRO-3: call alignment.ppo.engines.load_models_whole "
                           "before loading models")


def configure_deepspeed(accelerator: Accelerator, micro_batch: int, accumulation: int,
                        max_grad_norm: float | None) -> None:
    """Write PPO's batch geometry into the DeepSpeed config before ``prepare`` (which otherwise reads it
    from a data loader). A no-op for other engines."""
    if zero_stage(accelerator) is None:
        return
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    config["train_micro_batch_size_per_gpu"] = micro_batch
    config["gradient_accumulation_steps"] = accumulation
    config["train_batch_size"] = micro_batch * accumulation * accelerator.num_processes
    config["gradient_clipping"] = float(max_grad_norm or 0.0)


def scheduler_steps_per_update(accelerator: Accelerator) -> int:
    """How often the LR scheduler steps per optimizer step: accelerate's wrapper steps it once per
    process (it assumes each saw 1/N of a data set); DeepSpeed's engine steps it once."""
    return 1 if zero_stage(accelerator) is not None else accelerator.num_processes


def backward(accelerator: Accelerator, model: nn.Module, loss: torch.Tensor, boundary: bool) -> None:
    """Backward of one micro-batch's (already weighted) loss; ``boundary`` marks the mini-batch's last one.

    Under DeepSpeed the engine's own 1/accumulation scaling is turned off: the weights by token share
    already make the sum the mini-batch's loss. The step is :func:`step`'s, after the finiteness check.
    """
    if zero_stage(accelerator) is None:
        accelerator.backward(loss)
        return
    model.set_gradient_accumulation_boundary(boundary)
    model.backward(loss, scale_wrt_gas=False)


def step(accelerator: Accelerator, model: nn.Module, optimizer, scheduler, max_grad_norm: float) -> float | None:
    """The mini-batch's optimizer step: clip, step, schedule, zero the gradients. Returns the gradient's
    norm before clipping, the same on every process (``None`` where a DeepSpeed config turned its
    measurement off); when it is not finite no step was taken.

    Under DeepSpeed the engine does all four itself (clipping by its ``gradient_clipping``; the
    optimizer and scheduler wrappers that accelerate returns are then no-ops), and skips the step of a
    non-finite gradient itself.
    """
    if zero_stage(accelerator) is not None:
        model.step()
        norm = model.get_global_grad_norm()
        return None if norm is None else float(norm)
    # an infinite limit measures without clipping; the norm is of the gradients every process holds alike
    norm = float(accelerator.clip_grad_norm_(model.parameters(), max_grad_norm or math.inf))
    if math.isfinite(norm):
        optimizer.step()
        scheduler.step()
    optimizer.zero_grad()
    return norm


@contextlib.contextmanager
def full_weights(accelerator: Accelerator, model: nn.Module) -> Iterator[None]:
    """Every weight of the prepared ``model`` whole on this process until exit; a collective under
    ZeRO-3 and FSDP (every process must enter), a no-op otherwise.

    Inside, forwards of any submodule (the policy alone, token by token) run without communication, so
    the processes may run different numbers of them: only the main process evaluating, or sampling
    stopping at each process's own EOS. Leaving frees the gathered copies, without communication.
    """
    if zero_stage(accelerator) == 3:
        with _zero3_gathered(model):
            yield
    elif accelerator.distributed_type == DistributedType.FSDP:
        with _fsdp2_unsharded(model, bool(accelerator.state.fsdp_plugin.reshard_after_forward), accelerator.device):
            yield
    else:
        yield


@contextlib.contextmanager
def _zero3_gathered(engine: nn.Module) -> Iterator[None]:
    """ZeRO-3: gather all parameters and remove the engine's per-module fetch/release hooks while
    they are whole (as TRL's ``unwrap_model_for_generation``), then put the hooks back."""
    import deepspeed

    offload = engine.optimizer.parameter_offload
    with deepspeed.zero.GatheredParameters(list(engine.parameters())):
        for param in engine.module.parameters():
            param.ds_active_sub_modules.clear()
        for hook in [*offload.forward_hooks, *offload.backward_hooks]:
            hook.remove()
        offload.forward_hooks, offload.backward_hooks = [], []
        try:
            yield
        finally:
            coordinator = offload.param_coordinator
            if not coordinator.is_invalid_trace():  # its recorded fetch order no longer holds
                coordinator._invalidate_trace()
            offload._register_deepspeed_module(offload.module)


@contextlib.contextmanager
def _fsdp2_unsharded(model: nn.Module, reshard_after_forward: bool, device: torch.device) -> Iterator[None]:
    """FSDP2: one whole-module forward (two tokens) with the inner units told not to reshard after it (the
    root never does), so every unit's weights are gathered and registered whole and their hooks issue no
    all-gather until exit; on exit restore the configured ``reshard_after_forward`` and reshard (local).

    ``FSDPModule.unshard`` alone would not do: a unit registers its whole weights in its own pre-forward
    hook, and sampling calls the policy (a child), so the root's hook would never run. The forward of the
    whole also makes the root the first unit to run forward, as FSDP2 requires.
    """
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for unit in units:
        if unit is not model:
            unit.set_reshard_after_forward(False, recurse=False)
    ids = torch.zeros((1, 2), dtype=torch.long, device=device)
    with torch.no_grad():
        model(ids, torch.ones_like(ids), torch.arange(2, device=device)[None], 1)
    try:
        yield
    finally:
        for unit in units:
            if unit is not model:
                unit.set_reshard_after_forward(reshard_after_forward, recurse=False)
            unit.reshard()
