"""Training a GPT beyond one batch and one process: gradient accumulation and data parallelism.

Two ways to take the optimiser step of a batch of ``B`` sequences without computing it in one go:

- **gradient accumulation** (:func:`accumulation_step`): split the batch into ``k`` equal
  micro-batches, run forward and backward on each with its mean loss scaled by ``1/k``, and let
  ``.backward()`` add the gradients up; then clip and step once. With equal micro-batches the sum
  is the gradient of the whole batch's mean loss.
- **data parallelism**: ``W`` processes each hold a copy of the model and take ``B / W`` rows of
  the batch (:func:`shard`); PyTorch's ``DistributedDataParallel`` (DDP) averages the gradients
  over the processes with an all-reduce during the backward pass, so every copy takes the same
  step as one process with the whole batch. The model code does not change: DDP wraps it.

The module runs as a program under ``torchrun``, one process per rank::

    torchrun --nproc_per_node 2 -m dlbook.gpt.parallel --out params.pt --steps 3
    python -m torch.distributed.run --standalone --nproc_per_node 2 -m dlbook.gpt.parallel ...

It reads the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``), joins the process group (backend ``gloo`` for CPU processes,
``nccl`` for one GPU per process), wraps a :class:`dlbook.gpt.GPT` in DDP, trains a few steps on
its shard of batches every rank draws alike from one seed (:func:`fixed_batches`), and rank 0
writes the parameters and the losses to ``--out``. Run without torchrun it is one process with
the whole batch (no process group, no DDP), the reference the data-parallel run must match.

Shapes: ``B`` batch (global, over all ranks), ``T`` window length, ``W`` world size, ``k``
micro-batches per step.

Derived in: Chapter 3, *Beyond one machine*.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from dlbook.checkpoint import unwrap
from dlbook.gpt.model import GPT, GPTConfig
from dlbook.gpt.train import autocast, configure_optimizer, get_batch

__all__ = [
    "accumulation_step",
    "fixed_batches",
    "main",
    "run_torchrun",
    "shard",
    "split_micro_batches",
    "start_torchrun",
    "train_replica",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def split_micro_batches(
    x: torch.Tensor, y: torch.Tensor, k: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``k`` equal micro-batches ``(B/k, T)`` of a batch ``(B, T)``, in order.

    Equal sizes are required: the mean of the micro-batches' mean losses is the batch's mean
    loss only when every micro-batch holds as many tokens (a micro-batch of one sequence next to
    one of three would weigh its sequence three times as much).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"the number of micro-batches must be a positive integer, got {k!r}")
    if x.dim() != 2 or x.shape != y.shape:
        raise ValueError(f"x and y must both be (B, T), got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] % k:
        raise ValueError(
            f"a batch of {x.shape[0]} sequences does not split into {k} equal micro-batches"
        )
    return list(zip(x.chunk(k), y.chunk(k), strict=True))


def shard(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s rows of a batch ``(B, ...)``: the ``rank``-th of ``world_size`` equal
    blocks, ``(B / W, ...)``. Raises ValueError unless ``W`` divides ``B`` (equal shards, for
    the same reason as :func:`split_micro_batches`)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    if batch.shape[0] % world_size:
        raise ValueError(
            f"a batch of {batch.shape[0]} sequences does not split into {world_size} equal shards"
        )
    n = batch.shape[0] // world_size
    return batch[rank * n : (rank + 1) * n]


def accumulation_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    micro_batches: int = 1,
    *,
    lr: float | None = None,
    grad_clip: float | None = 1.0,
) -> torch.Tensor:
    """One optimisation step on a batch ``(B, T)``, computed in ``micro_batches`` equal pieces.

    Each micro-batch's mean cross-entropy is scaled by ``1/k`` before ``.backward()``, which
    adds to ``.grad``: after the ``k`` backward passes ``.grad`` holds the gradient of the batch's
    mean loss. Then the gradients are clipped and the optimiser steps, once. With ``k = 1`` this
    is :func:`dlbook.gpt.train_step`. The memory of the activations is that of one micro-batch.

    Under DDP (``model`` a ``DistributedDataParallel``) the first ``k - 1`` backward passes run
    inside ``model.no_sync()``: gradients accumulate locally, and only the last backward pass
    all-reduces them (one all-reduce per step instead of ``k``; the result is the same).

    Args:
        x, y: ``(B, T)`` inputs and targets, ``B`` a multiple of ``micro_batches``.
        lr: set the learning rate of every parameter group first.
        grad_clip: clip the gradients' global norm to this (None: no clipping).

    Returns:
        The batch's mean cross-entropy (the mean of the micro-batches' means), a detached 0-dim
        tensor on the model's device.

    Derived in: Chapter 3, *Gradient accumulation*.
    """
    pieces = split_micro_batches(x, y, micro_batches)
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    if not model.training:
        model.train()
    optimizer.zero_grad(set_to_none=True)
    total = None
    for i, (xm, ym) in enumerate(pieces):
        last = i == len(pieces) - 1
        sync = contextlib.nullcontext() if last or not isinstance(model, DDP) else model.no_sync()
        with sync:
            with autocast(xm.device):
                _, loss = model(xm, ym)
            (loss / micro_batches).backward()
        total = loss.detach() if total is None else total + loss.detach()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return total / micro_batches


def fixed_batches(
    steps: int,
    batch_size: int,
    config: GPTConfig,
    *,
    data: torch.Tensor | None = None,
    seed: int = 0,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` global batches ``(B, T)`` with ``T = config.block_size``, the same on every rank.

    Drawn from a generator of their own seeded with ``seed``: random windows of ``data`` (a 1-D
    token tensor, e.g. tiny-shakespeare) with :func:`dlbook.gpt.get_batch`, or, when ``data`` is
    None, uniformly random tokens (no data set needed).
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    if data is None:
        data = torch.randint(
            config.vocab_size, (steps * batch_size * config.block_size,), generator=gen
        )
    return [get_batch(data, batch_size, config.block_size, generator=gen) for _ in range(steps)]


def train_replica(
    config: GPTConfig,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    micro_batches: int = 1,
    lr: float = 1e-3,
    grad_clip: float | None = 1.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    seed: int = 0,
    same_shard: bool = False,
) -> tuple[GPT, list[float]]:
    """Train a fresh :class:`GPT` (seeded with ``seed``) with AdamW on ``batches``.

    Inside an initialised process group of ``W`` ranks the model is wrapped in DDP and each rank
    trains on its :func:`shard` of every global batch; outside one, the single process trains on
    the whole batches. Either way each step is :func:`accumulation_step` with ``micro_batches``
    micro-batches (of the rank's shard).

    Args:
        same_shard: every rank takes rank 0's shard, the classic bug (the sampler not split by
            rank); the book's check shows that it changes the result.

    Returns:
        The trained model (unwrapped from DDP) and the loss of each step, averaged over the ranks
        (the mean loss of the global batch, as the single process sees it).

    Derived in: Chapter 3, *Data parallelism*.
    """
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    torch.manual_seed(seed)  # the same initial parameters on every rank (DDP also broadcasts)
    model = GPT(config).to(device=device, dtype=dtype)
    optimizer = configure_optimizer(model, lr=lr)
    wrapped: nn.Module = model
    if distributed:
        dev = torch.device(device)
        wrapped = DDP(model, device_ids=[dev] if dev.type == "cuda" else None)
    losses = []
    for x, y in batches:
        r = 0 if same_shard else rank
        xs, ys = shard(x, r, world).to(device), shard(y, r, world).to(device)
        loss = accumulation_step(wrapped, optimizer, xs, ys, micro_batches, grad_clip=grad_clip).to(
            torch.float64
        )
        if distributed:  # for the log only: the mean over ranks of the shards' mean losses
            dist.all_reduce(loss, op=dist.ReduceOp.SUM)
            loss /= world
        losses.append(float(loss))
    return unwrap(model), losses


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m torch.distributed.run --nproc_per_node W -m dlbook.gpt.parallel",
        description="Train a small GPT data-parallel (DDP) on fixed batches; rank 0 saves it.",
    )
    p.add_argument("--out", required=True, help="file for rank 0's parameters and losses")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8, help="global batch, over all ranks")
    p.add_argument("--micro-batches", type=int, default=1, help="per rank and step")
    p.add_argument("--vocab-size", type=int, default=65)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-head", type=int, default=2)
    p.add_argument("--n-embd", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--grad-clip", type=float, default=1.0, help="0: no clipping")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument("--data", choices=["random", "shakespeare"], default="random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK if CUDA, else cpu")
    p.add_argument("--same-shard", action="store_true", help="the bug: all ranks read shard 0")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    """The program: parse ``argv``, join the process group if torchrun started us, train, save.

    Returns what rank 0 saves with ``torch.save`` to ``--out``: ``state_dict`` (the parameters,
    on the CPU), ``losses`` (per step), ``world_size``, ``backend`` (None without a process
    group), ``micro_batches`` and ``args``.
    """
    args = _parser().parse_args(argv)
    for name in ("steps", "batch_size", "micro_batches"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    under_torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.device is None:
        args.device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if device.type == "cuda":
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"local rank {local_rank} wants {device}, but {torch.cuda.device_count()} GPU(s) "
                "are visible: start at most one process per GPU, or pass --device cpu"
            )
        torch.cuda.set_device(device)
    backend = None
    if under_torchrun:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)  # rank, world size, address from the env
    try:
        world = dist.get_world_size() if under_torchrun else 1
        per_rank, rest = divmod(args.batch_size, world)
        if rest or per_rank % args.micro_batches:
            raise ValueError(
                f"--batch-size {args.batch_size} must split into {world} ranks x "
                f"{args.micro_batches} equal micro-batches"
            )
        config = GPTConfig(
            vocab_size=args.vocab_size,
            block_size=args.block_size,
            n_layer=args.n_layer,
            n_head=args.n_head,
            n_embd=args.n_embd,
        )
        data = None
        if args.data == "shakespeare":
            from dlbook.data import load_tinyshakespeare

            data = load_tinyshakespeare().train
        batches = fixed_batches(args.steps, args.batch_size, config, data=data, seed=args.seed)
        model, losses = train_replica(
            config,
            batches,
            micro_batches=args.micro_batches,
            lr=args.lr,
            grad_clip=args.grad_clip or None,
            dtype=DTYPES[args.dtype],
            device=device,
            seed=args.seed,
            same_shard=args.same_shard,
        )
        result = {
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "losses": losses,
            "world_size": world,
            "backend": backend,
            "micro_batches": args.micro_batches,
            "args": vars(args),
        }
        if not under_torchrun or dist.get_rank() == 0:
            torch.save(result, args.out)
        return result
    finally:
        if under_torchrun:
            dist.destroy_process_group()


def start_torchrun(
    args: Sequence[str], nproc: int = 2, *, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``python -m torch.distributed.run --standalone --nproc_per_node nproc -m
    dlbook.gpt.parallel ARGS`` (this module as the program, one process per rank), with
    ``sys.executable``: the Python that runs the caller, a notebook's kernel or a test.

    ``--standalone`` lets torchrun's agent bind a free port itself (port 0, on localhost) and hand
    it to the workers: no port to choose, no race with other programs. The environment gets
    ``OMP_NUM_THREADS=1`` (unless set), ``dlbook`` on ``PYTHONPATH``, and, where the machine has a
    loopback interface ``lo``, ``GLOO_SOCKET_IFNAME=lo``: gloo then talks over loopback and needs
    no network. The output (stdout and stderr together) is piped: read it with
    ``communicate()``.
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be a positive integer, got {nproc!r}")
    env = dict(os.environ if env is None else env)
    env.setdefault("OMP_NUM_THREADS", "1")
    code = os.path.dirname(os.path.dirname(os.path.abspath(__import__("dlbook").__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (code, env.get("PYTHONPATH")) if p)
    if "GLOO_SOCKET_IFNAME" not in env and "lo" in {n for _, n in socket.if_nameindex()}:
        env["GLOO_SOCKET_IFNAME"] = "lo"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc_per_node", str(nproc), "-m", "dlbook.gpt.parallel", *map(str, args)]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def run_torchrun(args: Sequence[str], nproc: int = 2, *, timeout: float = 300.0) -> str:
    """:func:`start_torchrun` and wait for it (at most ``timeout`` seconds, then kill it).

    Returns the output; raises RuntimeError with its end if the launch fails or times out.
    """
    proc = start_torchrun(args, nproc)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise RuntimeError(f"torchrun timed out after {timeout} s:\n{output[-4000:]}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun failed (exit {proc.returncode}):\n{output[-4000:]}")
    return output


if __name__ == "__main__":
    main(sys.argv[1:])
