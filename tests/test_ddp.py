"""Data parallelism and gradient accumulation take the whole batch's step (dlbook.gpt.parallel).

Two CPU processes under ``torchrun`` (``python -m torch.distributed.run``, backend gloo), each
training a small float64 GPT with AdamW on half of every batch through PyTorch's
``DistributedDataParallel``, must end with the parameters of one process that takes the whole
batch with the chapter's own :func:`dlbook.gpt.train_step`, and of one process that accumulates
two half batches. Tolerance: ``1e-12`` on every parameter (measured: about ``3e-15``, the
rounding of float64 sums taken in another order), ``1e-5`` on the losses, which the GPT computes in
float32 whatever the parameters' dtype. The checks can fail: the classic mistakes
(every rank reading the same shard, forgetting the ``1/k`` of accumulation, the mean of
unequal micro-batches' means) move the parameters by ``1e-5`` to ``1e-2``, and the tests assert
that they do.

The launcher (``dlbook.gpt.parallel.start_torchrun``) runs ``--standalone``: torchrun's agent
binds a free port itself (port 0) on localhost and hands it to the workers as ``MASTER_ADDR`` and
``MASTER_PORT``, so there is no port to guess and no race with other processes; gloo is pinned
to the loopback interface (``GLOO_SOCKET_IFNAME=lo``) where there is one, so no network is
needed. ``OMP_NUM_THREADS=1`` keeps two processes on two cores. Each launch has a timeout.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from dlbook import gpt
from dlbook.gpt import parallel as par

TOL = 1e-12  # float64 parameters; measured differences are about 3e-15
LOSS_TOL = (
    1e-5  # the GPT computes its cross-entropy in float32 (logits.float()): 1 ulp at 4 is 5e-7
)
WRONG = 1e-6  # a wrong implementation moves some parameter by more than this (measured >= 3e-5)
SETTINGS = dict(steps=3, batch_size=8, vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32)
LR = 1e-3
TIMEOUT = 120  # seconds per launch; a launch takes about 10 s on two cores


def config() -> gpt.GPTConfig:
    keys = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
    return gpt.GPTConfig(**{k: SETTINGS[k] for k in keys})


def cli_args(out, **extra) -> list[str]:
    args = ["--out", str(out), "--dtype", "float64", "--lr", str(LR), "--device", "cpu"]
    for k, v in {**SETTINGS, **extra}.items():
        flag = "--" + k.replace("_", "-")
        args += [flag] if v is True else [flag, str(v)]
    return args


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The data-parallel runs, launched side by side: ``{name: (saved result, seconds)}``."""
    folder = tmp_path_factory.mktemp("ddp")
    wanted = {
        "ddp": {},  # 2 ranks x 4 sequences
        "ddp_accum": {"micro_batches": 2},  # 2 ranks x 2 micro-batches x 2 sequences
        "ddp_same_shard": {"same_shard": True},  # the bug: both ranks read rows 0-3
    }
    start = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")  # CPU processes, gloo
    procs = {
        name: par.start_torchrun(cli_args(folder / f"{name}.pt", **extra), 2, env=env)
        for name, extra in wanted.items()
    }
    results = {}
    try:
        for name, proc in procs.items():
            remaining = max(1.0, TIMEOUT - (time.perf_counter() - start))
            output, _ = proc.communicate(timeout=remaining)
            assert proc.returncode == 0, f"torchrun ({name}) failed:\n{output[-4000:]}"
            results[name] = torch.load(folder / f"{name}.pt", weights_only=False)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def whole_batch_reference() -> tuple[dict[str, torch.Tensor], list[float]]:
    """One process, the whole batch, the chapter's ``gpt.train_step`` (no code of parallel.py
    but the batches)."""
    torch.manual_seed(0)
    model = gpt.GPT(config()).double()
    optimizer = gpt.configure_optimizer(model, lr=LR)
    losses = []
    for x, y in par.fixed_batches(SETTINGS["steps"], SETTINGS["batch_size"], config(), seed=0):
        losses.append(float(gpt.train_step(model, optimizer, x, y, grad_clip=1.0)))
    return {k: v.detach() for k, v in model.state_dict().items()}, losses


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def accumulated(micro_batches: int = 2, scale: float | None = None, sizes=None, by_size=False):
    """One process accumulating micro-batches by hand. Each micro-batch's mean loss is multiplied
    by ``scale`` (right: ``1/k``), or by its share of the batch ``n_i / B`` when ``by_size``;
    ``sizes`` gives unequal micro-batches."""
    torch.manual_seed(0)
    model = gpt.GPT(config()).double()
    optimizer = gpt.configure_optimizer(model, lr=LR)
    scale = 1.0 / micro_batches if scale is None else scale
    sizes = sizes or [SETTINGS["batch_size"] // micro_batches] * micro_batches
    for x, y in par.fixed_batches(SETTINGS["steps"], SETTINGS["batch_size"], config(), seed=0):
        optimizer.zero_grad()
        for xm, ym in zip(x.split(sizes), y.split(sizes), strict=True):
            _, loss = model(xm, ym)
            (loss * (len(xm) / len(x) if by_size else scale)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return {k: v.detach() for k, v in model.state_dict().items()}


def test_two_processes_with_half_batches_take_the_whole_batch_step(runs):
    ref, ref_losses = whole_batch_reference()
    result = runs["ddp"]
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    assert max_diff(result["state_dict"], ref) < TOL
    assert max(abs(a - b) for a, b in zip(result["losses"], ref_losses, strict=True)) < LOSS_TOL


def test_data_parallel_with_accumulation_takes_the_whole_batch_step(runs):
    ref, _ = whole_batch_reference()
    assert runs["ddp_accum"]["micro_batches"] == 2
    assert max_diff(runs["ddp_accum"]["state_dict"], ref) < TOL


def test_every_rank_reading_the_same_shard_is_caught(runs):
    ref, _ = whole_batch_reference()
    assert max_diff(runs["ddp_same_shard"]["state_dict"], ref) > WRONG


def test_accumulating_two_half_batches_takes_the_whole_batch_step():
    ref, ref_losses = whole_batch_reference()
    model, losses = par.train_replica(
        config(),
        par.fixed_batches(SETTINGS["steps"], SETTINGS["batch_size"], config(), seed=0),
        micro_batches=2,
        lr=LR,
        dtype=torch.float64,
    )
    assert max_diff(model.state_dict(), ref) < TOL
    assert max(abs(a - b) for a, b in zip(losses, ref_losses, strict=True)) < LOSS_TOL
    assert max_diff(accumulated(2), ref) < TOL  # the hand-written loop agrees too
    assert max_diff(accumulated(4), ref) < TOL


def test_accumulation_mistakes_change_the_step():
    ref, _ = whole_batch_reference()
    # forgetting 1/k: AdamW is almost blind to a constant gradient scale (only its eps and the
    # clipping see it), yet the parameters move by far more than the tolerance
    assert max_diff(accumulated(2, scale=1.0), ref) > WRONG
    # unequal micro-batches (6 and 2 sequences), their mean losses averaged: the 2 weigh 3x
    assert max_diff(accumulated(2, sizes=[6, 2]), ref) > 1e3 * WRONG
    # ... and weighted by their shares of the batch, 6/8 and 2/8, they are right again
    assert max_diff(accumulated(2, sizes=[6, 2], by_size=True), ref) < TOL


def test_inputs_are_validated():
    x = torch.zeros(6, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="equal micro-batches"):
        par.split_micro_batches(x, x, 4)
    with pytest.raises(ValueError, match="positive integer"):
        par.split_micro_batches(x, x, 0)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        par.split_micro_batches(x, x[:, :3], 2)
    with pytest.raises(ValueError, match="equal shards"):
        par.shard(x, 0, 4)
    with pytest.raises(ValueError, match="rank"):
        par.shard(x, 2, 2)
    assert torch.equal(par.shard(torch.arange(6), 1, 3), torch.tensor([2, 3]))


def test_the_program_without_torchrun_is_one_process_with_the_whole_batch(tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "single.pt"
    result = par.main(cli_args(out))
    assert result["world_size"] == 1 and result["backend"] is None
    saved = torch.load(out, weights_only=False)
    ref, ref_losses = whole_batch_reference()
    assert max_diff(saved["state_dict"], ref) < TOL
    assert max(abs(a - b) for a, b in zip(saved["losses"], ref_losses, strict=True)) < LOSS_TOL
    with pytest.raises(ValueError, match="equal micro-batches"):
        par.main(cli_args(out, micro_batches=3))


@pytest.mark.gpu
def test_on_gpus_the_processes_use_nccl_and_take_the_same_step(tmp_path):
    """One process per GPU (at most two), backend NCCL, against the CPU's whole-batch run.

    With one GPU the world has one rank: the NCCL path runs, the averaging does not. The
    tolerance is wider than on the CPU: the GPU's float64 kernels sum in other orders.
    """
    nproc = min(2, torch.cuda.device_count())
    out = tmp_path / "nccl.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [a for a in cli_args(out) if a not in ("--device", "cpu")]  # cuda:LOCAL_RANK
    proc = par.start_torchrun(args, nproc, env=env)
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output[-4000:]
    result = torch.load(out, weights_only=False)
    assert result["backend"] == "nccl" and result["world_size"] == nproc
    ref, _ = whole_batch_reference()
    assert max_diff(result["state_dict"], ref) < 1e-9
