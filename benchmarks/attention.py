"""Explicit vs fused attention: forward+backward time and peak memory against sequence length.

    python -m benchmarks.attention            # sizes to 8k on a GPU, to 2k on a CPU
    python -m benchmarks.attention --quick    # CI-sized

The explicit path (``dlbook.attention.scaled_dot_product_attention(..., explicit=True)``)
materialises the (B, h, T, T) scores and weights; the fused path calls PyTorch's
``scaled_dot_product_attention`` kernel (FlashAttention / memory-efficient on a GPU). Peak memory
is ``torch.cuda.max_memory_allocated`` on a GPU; on a CPU, where torch keeps no allocator
statistics, it is the growth of the process's peak resident set (Linux ``VmHWM``, reset before
each call through ``/proc/self/clear_refs``). The growth exponent is the slope of log(memory) and
log(time) against log(T) over the largest sizes (expect about 2 for the explicit path's memory).
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


def _vm(field: str) -> int:
    """A ``/proc/self/status`` field in bytes, e.g. ``VmHWM`` (peak resident set) or ``VmRSS``."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{field} not in /proc/self/status")


def _cpu_peak_bytes(t: int, explicit: bool) -> int:
    """Peak resident-set growth of one forward+backward on the CPU (Linux).

    Writing 5 to ``/proc/self/clear_refs`` resets the peak (``VmHWM``) to the current resident
    set, so the peak after the call, minus the resident set before it, is what the call needed.
    """
    import gc

    q, k, v = _inputs(t, torch.device("cpu"), torch.float32)
    _fwd_bwd(q, k, v, explicit)  # load kernels; let the allocator settle
    q.grad = k.grad = v.grad = None
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _vm("VmRSS")
    _fwd_bwd(q, k, v, explicit)
    return _vm("VmHWM") - before


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
            mem = (
                _gpu_peak_bytes(t, explicit, device, dtype) if gpu else _cpu_peak_bytes(t, explicit)
            )
            times[explicit].append(sec)
            mems[explicit].append(max(mem, 1))
            res[explicit] = (sec, mem)
        (te, me), (tf, mf) = res[True], res[False]
        rows.append([t, te * 1e3, tf * 1e3, te / tf, me / 2**20, mf / 2**20, me / max(mf, 1)])
    body = table(
        ["T", "explicit ms", "fused ms", "time ratio", "explicit MiB", "fused MiB", "memory ratio"],
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
