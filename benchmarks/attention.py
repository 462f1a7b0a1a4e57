"""Explicit vs fused attention: forward+backward time and peak memory against sequence length.

    python -m benchmarks.attention            # sizes to 8k on a GPU, to 2k on a CPU
    python -m benchmarks.attention --quick    # CI-sized

The explicit path (``dlbook.attention.scaled_dot_product_attention(..., explicit=True)``)
materialises the (B, h, T, T) scores and weights; the fused path calls PyTorch's
``scaled_dot_product_attention`` kernel (FlashAttention / memory-efficient on a GPU). Peak memory
is ``torch.cuda.max_memory_allocated`` on a GPU; on a CPU, where torch keeps no allocator
statistics (and the resident set's peak hides in memory the allocator reuses), it is the memory
autograd saves for the backward pass, counted through ``saved_tensors_hooks``.
The growth exponent is the slope of log(memory) and log(time) against log(T) over the
largest sizes (expect about 2 for the explicit path's memory).
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks._common import parser, record, table, time_it

B, H, D = 4, 8, 64


def _inputs(t: int, device: torch.device, dtype: torch.dtype):
    g = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (
        torch.randn(B, H, t, D, generator=g).to(device, dtype).requires_grad_(True)
        for _ in range(3)
    )
    return q, k, v


def _fwd_bwd(q, k, v, explicit: bool) -> None:
    from dlbook.attention import scaled_dot_product_attention

    out = scaled_dot_product_attention(q, k, v, is_causal=True, explicit=explicit)
    out.float().sum().backward()


def _gpu_peak_bytes(t: int, explicit: bool, device: torch.device, dtype: torch.dtype) -> int:
    q, k, v = _inputs(t, device, dtype)
    _fwd_bwd(q, k, v, explicit)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    _fwd_bwd(q, k, v, explicit)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def _slope(ts, ys) -> float:
    n = min(3, len(ts))
    return float(np.polyfit(np.log(ts[-n:]), np.log(ys[-n:]), 1)[0])


def _saved_bytes(t: int, explicit: bool) -> int:
    """Bytes autograd keeps for the backward pass of one forward (CPU): every distinct tensor the
    graph saves, counted once (a deterministic measure, unlike the process's resident set, whose
    peak hides in memory the allocator reuses)."""
    q, k, v = _inputs(t, torch.device("cpu"), torch.float32)
    seen: dict[int, int] = {}

    def pack(x: torch.Tensor) -> torch.Tensor:
        if x.data_ptr() not in {q.data_ptr(), k.data_ptr(), v.data_ptr()}:
            seen[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
        return x

    from dlbook.attention import scaled_dot_product_attention

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = scaled_dot_product_attention(q, k, v, is_causal=True, explicit=explicit)
    del out
    return sum(seen.values())


def main(argv=None) -> None:
    import dlbook

    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    device = torch.device(args.device) if args.device else dlbook.device()
    gpu = device.type == "cuda"
    dtype = torch.bfloat16 if gpu else torch.float32
    if gpu:
        sizes = [512, 1024, 2048, 4096] if args.quick else [512, 1024, 2048, 4096, 8192]
    else:
        sizes = [256, 512, 1024] if args.quick else [256, 512, 1024, 2048]
    rows, times, mems = [], {True: [], False: []}, {True: [], False: []}
    for t in sizes:
        q, k, v = _inputs(t, device, dtype)
        res = {}
        for explicit in (True, False):
            sec = time_it(
                lambda e=explicit, qkv=(q, k, v): _fwd_bwd(*qkv, e),
                device,
                repeat=3 if args.quick else 7,
                min_time=20.0,
            )
            mem = _gpu_peak_bytes(t, explicit, device, dtype) if gpu else _saved_bytes(t, explicit)
            times[explicit].append(sec)
            mems[explicit].append(max(mem, 1))
            res[explicit] = (sec, mem)
        (te, me), (tf, mf) = res[True], res[False]
        rows.append([t, te * 1e3, tf * 1e3, te / tf, me / 2**20, mf / 2**20, me / max(mf, 1)])
    what = "peak MiB" if gpu else "MiB saved for backward"
    body = table(
        [
            "T",
            "explicit ms",
            "fused ms",
            "time ratio",
            f"explicit {what}",
            f"fused {what}",
            "memory ratio",
        ],
        rows,
    )
    notes = (
        f"B={B}, heads={H}, d_head={D}, causal, {str(dtype).replace('torch.', '')}, "
        "forward+backward. "
        f"Growth exponents over the largest sizes: explicit time {_slope(sizes, times[True]):.2f}, "
        f"fused time {_slope(sizes, times[False]):.2f}, explicit memory "
        f"{_slope(sizes, mems[True]):.2f}, fused memory {_slope(sizes, mems[False]):.2f}."
    )
    if gpu and 2048 in sizes:
        i = sizes.index(2048)
        notes += (
            f" At T=2048: fused is {rows[i][3]:.1f}x faster and uses {rows[i][6]:.1f}x less "
            "memory (targets: >= 5x and >= 10x)."
        )
    record("attention: explicit vs fused", device, body, notes=notes, write=not args.no_record)


if __name__ == "__main__":
    main()
