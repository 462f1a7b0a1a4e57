"""Checkpoints that resume a run exactly: weights, optimiser state, every random state, the step.

:func:`save_checkpoint` writes one file atomically (to ``NAME.tmp``, then renamed: a crash never
leaves half a checkpoint) and :func:`load_checkpoint` reads it back into a model and an optimiser.
Resuming reproduces the uninterrupted run number for number only if the random states come back
too: dropout masks and batch order are drawn from torch's, Python's and NumPy's global generators
(and, on a GPU, CUDA's), so the file holds all of them. Nothing here knows about a particular
model: a model with a dataclass ``config`` attribute (like :class:`dlbook.gpt.GPTConfig`) has it
saved, and a checkpoint of another configuration is refused on loading. A ``torch.compile``'d
model is unwrapped to the module it compiles.

The file holds tensors, numbers, strings, lists and dicts only, so it loads with
``torch.load(weights_only=True)``, which runs no code from the file.

Derived in: Chapter 3, *Training* (checkpoints).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

__all__ = ["load_checkpoint", "save_checkpoint", "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module itself: ``torch.compile(model)`` wraps it, and keeps it as ``_orig_mod``.

    Use it to sample from or inspect a model that :func:`dlbook.gpt.maybe_compile` compiled.
    """
    return getattr(model, "_orig_mod", model)


def _config_of(model: nn.Module) -> dict[str, Any] | None:
    """``model.config`` as a dict when it is a dataclass instance, else None."""
    config = getattr(model, "config", None)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return None


# ----------------------------------------------------------------------------- random states


def _numpy_state() -> dict[str, Any]:
    """NumPy's global state, its key array stored as a tensor (``weights_only`` loads those)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _rng_state() -> dict[str, Any]:
    """The state of every global generator: torch (CPU and each GPU), Python, NumPy."""
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": _numpy_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`_rng_state` returned (CUDA's only where a GPU is present)."""
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(state["python"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ----------------------------------------------------------------------------- save and load


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    step: int = 0,
    extra: dict | None = None,
) -> Path:
    """Save what an exact resume needs: weights, optimiser state, random states, step, config.

    ``extra`` holds anything else made of tensors, numbers, strings, lists and dicts (e.g. the
    losses so far); it is stored as is. The file loads with ``torch.load(weights_only=True)``.

    Returns:
        The path written.

    Derived in: Chapter 3, *Training* (checkpoints).
    """
    inner = unwrap(model)
    ckpt = {
        "model": inner.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "rng": _rng_state(),
        "step": int(step),
        "config": _config_of(inner),
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)  # atomic: a crash never leaves half a checkpoint
    return path


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    restore_rng: bool = True,
    map_location: torch.device | str | None = None,
) -> dict[str, Any]:
    """Load a :func:`save_checkpoint` file into ``model`` (and ``optimizer``), restore the
    random states, and return ``{"step": ..., "config": ..., "extra": ...}``.

    ``map_location=None`` loads the tensors onto the device of the model's parameters.

    Raises:
        ValueError: the checkpoint was saved from a model of another configuration, or an
            optimiser is given but the checkpoint holds no optimiser state.

    Derived in: Chapter 3, *Training* (checkpoints).
    """
    inner = unwrap(model)
    if map_location is None:
        map_location = next(inner.parameters()).device
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    saved, ours = ckpt.get("config"), _config_of(inner)
    if saved is not None and ours is not None and saved != ours:
        raise ValueError(
            f"checkpoint {path} holds a model with config {saved}, but the model given has "
            f"config {ours}"
        )
    inner.load_state_dict(ckpt["model"])
    if optimizer is not None:
        if ckpt["optimizer"] is None:
            raise ValueError(f"checkpoint {path} holds no optimiser state")
        optimizer.load_state_dict(ckpt["optimizer"])
    if restore_rng:
        _set_rng_state(ckpt["rng"])
    return {"step": ckpt["step"], "config": saved, "extra": ckpt["extra"]}
