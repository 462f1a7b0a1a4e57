"""Training a GPT: random windows of the text, mixed precision, AdamW, the learning-rate
schedule, one optimisation step, the loss estimate, and ``torch.compile``.

A notebook writes the loop itself (with :func:`dlbook.train.train_loop`): each step draws a batch
with :func:`get_batch`, sets the rate from :func:`cosine_lr` and calls :func:`train_step`; every
few hundred steps :func:`estimate_loss` measures the train and validation loss on fixed batches.
On a CUDA GPU the forward pass runs under bf16 autocast (:func:`autocast`) and
:func:`maybe_compile` wraps the model in ``torch.compile``.

Shapes: ``B`` batch, ``T`` window length (at most the context ``block_size``).

Derived in: Chapter 3, *Training*.
"""

from __future__ import annotations

import contextlib
import math
import os

import torch
import torch.nn as nn

from dlbook.checkpoint import unwrap
from dlbook.runtime import eval_mode, resolve_device

__all__ = [
    "AUTOCAST_ENV",
    "autocast",
    "configure_optimizer",
    "cosine_lr",
    "estimate_loss",
    "get_batch",
    "maybe_compile",
    "train_step",
]


def get_batch(
    data: torch.Tensor,
    batch_size: int,
    block_size: int,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of a 1-D token tensor: inputs and next-token targets.

    The window starts are drawn from ``generator`` (None: torch's global generator).

    Args:
        device: where to put the batch. ``None`` leaves it where ``data`` is (a corpus lives on
            the CPU), unlike the book's ``device=None`` elsewhere: a batch goes where its model
            is, and the notebooks' small models stay on the CPU.

    Returns:
        ``x, y``, both ``(B, T)`` int64 with ``y[:, t] = x[:, t + 1]`` in the text, i.e. ``y``
        is ``x`` shifted left by one.

    Derived in: Chapter 3, *Maximum likelihood is cross-entropy*.
    """
    if not isinstance(data, torch.Tensor) or data.dim() != 1:
        got = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
        raise ValueError(f"data must be a 1-D tensor of token ids, got {got}")
    if batch_size < 1 or block_size < 1:
        raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size}, {block_size}")
    if len(data) <= block_size:
        raise ValueError(
            f"data holds {len(data)} tokens; windows of block_size={block_size} need at least "
            f"{block_size + 1}"
        )
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size + 1)
    windows = data[starts[:, None] + offsets]  # (B, T + 1)
    x, y = windows[:, :-1], windows[:, 1:]
    if device is not None:
        x, y = x.to(device), y.to(device)
    return x, y


AUTOCAST_ENV = "DLBOOK_AUTOCAST"


def autocast(device: torch.device | str | None = None) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (matrix products in bfloat16, reductions in float32); nothing on
    other devices, where the model runs in float32. ``device=None`` means :func:`dlbook.device`.

    The environment variable ``DLBOOK_AUTOCAST`` overrides the choice: ``bf16`` autocasts on any
    device (on a CPU too: how the book's tests rehearse the GPU's mixed precision), ``off``
    never does.
    """
    device = resolve_device(None) if device is None else torch.device(device)
    wanted = os.environ.get(AUTOCAST_ENV, "").strip().lower()
    if wanted not in ("", "bf16", "off"):
        raise ValueError(f"{AUTOCAST_ENV} must be 'bf16' or 'off', got {wanted!r}")
    on = wanted == "bf16" or (wanted == "" and device.type == "cuda")
    if on and device.type in ("cuda", "cpu"):  # the devices whose bf16 autocast the book uses
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure_optimizer(
    model: nn.Module,
    *,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.99),
) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices (linear weights and embeddings, as in nanoGPT)
    and none on the vectors (biases, LayerNorm gains and biases).

    Derived in: Chapter 3, *Training*.
    """
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def cosine_lr(step: int, *, max_lr: float, min_lr: float, warmup: int, total: int) -> float:
    """Linear warm-up to ``max_lr`` over ``warmup`` steps, then a cosine decay to ``min_lr`` at
    ``total`` steps (and ``min_lr`` after)."""
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float | None = None,
    grad_clip: float | None = 1.0,
) -> torch.Tensor:
    """One optimisation step on a batch: forward, cross-entropy, backward, clip, update.

    Args:
        x, y: ``(B, T)`` inputs and targets (from :func:`get_batch`).
        lr: set the learning rate of every parameter group first (e.g. from :func:`cosine_lr`).
        grad_clip: clip the gradients' global norm to this (None: no clipping).

    Returns:
        The batch's mean cross-entropy in nats, before the update, as a 0-dim tensor on the
        model's device. The step reads nothing back to the host (on a GPU that would make it wait
        for the device every step); ``float(loss)`` does, so read it only when logging, as
        :func:`dlbook.train.train_loop` does every ``log_every`` steps.

    Derived in: Chapter 3, *Training*.
    """
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    if not model.training:
        model.train()
    # Free the last step's gradients before the forward pass, not after it: measured 2-3% faster
    # on a CPU (benchmarks/gpt.py), as the forward pass then runs without them in memory.
    optimizer.zero_grad(set_to_none=True)
    with autocast(x.device):
        _, loss = model(x, y)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def estimate_loss(
    model: nn.Module,
    splits: dict[str, torch.Tensor],
    *,
    batch_size: int,
    block_size: int | None = None,
    iters: int = 20,
    seed: int = 1234,
) -> dict[str, float]:
    """Mean cross-entropy (nats per token) on ``iters`` random batches of each split.

    The batches are drawn from a generator of their own, seeded with ``seed``: every call sees
    the same windows (estimates at different steps are comparable), and the global random state
    used by training is left untouched.

    Args:
        splits: e.g. ``{"train": corpus.train, "val": corpus.val}``, 1-D token tensors.
        block_size: window length (default: the model's context).

    Returns:
        ``{name: loss}``.

    Derived in: Chapter 3, *Maximum likelihood is cross-entropy*.
    """
    inner = unwrap(model)
    block_size = block_size or inner.config.block_size
    device = next(inner.parameters()).device
    out = {}
    with eval_mode(model):
        for name, data in splits.items():
            gen = torch.Generator().manual_seed(seed)
            total = torch.zeros((), device=device)
            for _ in range(iters):
                x, y = get_batch(data, batch_size, block_size, device=device, generator=gen)
                with autocast(device):
                    _, loss = model(x, y)
                total += loss.float()  # summed on the device: one read at the end
            out[name] = float(total) / iters
    return out


def maybe_compile(model: nn.Module, enabled: bool | None = None) -> nn.Module:
    """``torch.compile(model)`` when ``enabled`` (default: on CUDA only); else the model.

    Compilation takes a minute and pays off only on long GPU runs. Checkpoints and
    :func:`dlbook.gpt.generate` unwrap the compiled module (``model._orig_mod``) themselves.
    """
    if enabled is None:
        enabled = next(model.parameters()).is_cuda
    return torch.compile(model) if enabled else model
