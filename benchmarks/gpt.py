"""GPT training speed: tokens/s, model FLOPs utilisation, the fast paths, and time to a val loss.

    python -m benchmarks.gpt                 # the CPU configuration; on a GPU also the GPU one
    python -m benchmarks.gpt --quick         # CI-sized: throughput only, few steps
    python -m benchmarks.gpt --device cuda   # on a GPU machine

The configurations are the GPT chapter's (``chapters/03-gpt/gpt-training.ipynb``): on a CPU 3
layers x width 96 x context 64, batch 32, 1,000 steps, target val loss 2.0; on a GPU nanoGPT's
"baby GPT" (6 layers x 6 heads x width 384 x context 256, dropout 0.2, batch 64, 5,000 steps),
target 1.50. Each fast path is timed against the plain path (the explicit attention of
``dlbook.attention``, float32, eager) in the same run:

- *fused*: PyTorch's ``scaled_dot_product_attention`` kernel (FlashAttention on a GPU);
- *+ bf16*: autocast to bfloat16 on CUDA (what ``dlbook.gpt.train_step`` does there);
- *+ compile*: ``torch.compile`` of the model.

Model FLOPs per token are ``6 N + 12 L T d`` (Kaplan et al., 2020; nanoGPT's ``estimate_mfu``),
with ``N`` the parameters without the position embeddings (the tied token matrix is the output
projection, and counts). MFU divides the achieved FLOP/s by the
GPU's dense bf16 peak; on a CPU the achieved GFLOP/s are reported instead.
"""

from __future__ import annotations

import contextlib
import math
import time

import torch

from benchmarks._common import device_name, parser, record, sync, table

BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}

SETTINGS = {
    "cpu": dict(
        config=dict(vocab_size=65, block_size=64, n_layer=3, n_head=4, n_embd=96),
        batch=32,
        steps=1000,
        lr=3e-3,
        target=2.0,
    ),
    "gpu": dict(
        config=dict(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2),
        batch=64,
        steps=5000,
        lr=1e-3,
        target=1.50,
    ),
}


def _peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def _model(settings: dict, device: torch.device, *, explicit: bool, compile: bool):
    from dlbook import gpt

    torch.manual_seed(0)
    model = gpt.GPT(gpt.GPTConfig(**settings["config"])).to(device)
    for m in model.modules():
        if isinstance(m, gpt.CausalSelfAttention):
            m.explicit = explicit
    return torch.compile(model) if compile else model


def _step(model, opt, x, y, bf16: bool) -> float:
    ctx = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if bf16
        else contextlib.nullcontext()
    )
    with ctx:
        _, loss = model(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss


def throughput(settings, corpus, device, *, explicit, bf16, compile, steps) -> float:
    """Training tokens per second, after warm-up steps (compilation happens there)."""
    from dlbook import gpt

    model = _model(settings, device, explicit=explicit, compile=compile)
    opt = gpt.configure_optimizer(model, lr=settings["lr"])
    B, T = settings["batch"], settings["config"]["block_size"]
    gen = torch.Generator().manual_seed(0)
    batches = [gpt.get_batch(corpus.train, B, T, device=device, generator=gen) for _ in range(8)]
    for i in range(3 if not compile else 5):
        _step(model, opt, *batches[i % 8], bf16)
    sync(device)
    start = time.perf_counter()
    for i in range(steps):
        loss = _step(model, opt, *batches[i % 8], bf16)
    float(loss)  # wait for the last step
    sync(device)
    return steps * B * T / (time.perf_counter() - start)


def time_to_target(settings, corpus, device, *, bf16: bool, compile: bool, eval_every: int):
    """Train with the chapter's schedule until the val loss reaches the target; seconds, steps."""
    from dlbook import gpt

    model = _model(settings, device, explicit=False, compile=compile)
    opt = gpt.configure_optimizer(model, lr=settings["lr"])
    B, T, total = settings["batch"], settings["config"]["block_size"], settings["steps"]
    splits = {"val": corpus.val}
    torch.manual_seed(0)
    start, val = time.perf_counter(), math.inf
    for step in range(total):
        lr = gpt.cosine_lr(
            step, max_lr=settings["lr"], min_lr=settings["lr"] / 10, warmup=50, total=total
        )
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = gpt.get_batch(corpus.train, B, T, device=device)
        model.train()
        _step(model, opt, x, y, bf16)
        if (step + 1) % eval_every == 0 or step == total - 1:
            val = gpt.estimate_loss(model, splits, batch_size=B, iters=10)["val"]
            if val <= settings["target"]:
                break
    sync(device)
    return time.perf_counter() - start, step + 1, val


def main(argv=None) -> None:
    import dlbook
    from dlbook import gpt
    from dlbook.data import load_tinyshakespeare

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads on a CPU (default 1)")
    args = p.parse_args(argv)
    device = torch.device(args.device) if args.device else dlbook.device()
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    corpus = load_tinyshakespeare()
    names = ["cpu"] + (["gpu"] if device.type == "cuda" else [])
    peak = _peak(device)
    rows, targets = [], []
    for name in names:
        settings = SETTINGS[name]
        cfg = gpt.GPTConfig(**settings["config"])
        # N: every parameter but the position embeddings (the tied token matrix does the output
        # projection's work, so it counts), as nanoGPT's estimate_mfu
        n_params = gpt.GPT(cfg).num_params() - cfg.block_size * cfg.n_embd
        T, L, d = cfg.block_size, cfg.n_layer, cfg.n_embd
        flops_per_token = 6 * n_params + 12 * L * T * d
        paths = [
            ("plain (explicit attention, fp32)", dict(explicit=True, bf16=False, compile=False)),
            ("fused attention", dict(explicit=False, bf16=False, compile=False)),
        ]
        if device.type == "cuda":
            paths += [
                ("fused + bf16", dict(explicit=False, bf16=True, compile=False)),
                ("fused + bf16 + compile", dict(explicit=False, bf16=True, compile=True)),
            ]
        steps = 10 if args.quick else (60 if device.type == "cpu" else 50)
        base = None
        for label, kw in paths:
            tps = throughput(settings, corpus, device, steps=steps, **kw)
            base = base or tps
            achieved = flops_per_token * tps
            mfu = f"{100 * achieved / peak:.1f}%" if peak else "-"
            rows.append(
                [name, label, f"{tps:,.0f}", f"{tps / base:.2f}x", f"{achieved / 1e9:,.1f}", mfu]
            )
            print(rows[-1], flush=True)
        if not args.quick:
            fast = paths[-1][1]
            seconds, n_steps, val = time_to_target(
                settings,
                corpus,
                device,
                bf16=fast["bf16"],
                compile=fast["compile"],
                eval_every=100 if name == "cpu" else 250,
            )
            reached = "yes" if val <= settings["target"] else "no"
            targets.append(
                [name, settings["target"], reached, f"{val:.3f}", n_steps, f"{seconds:.1f}"]
            )
            print(targets[-1], flush=True)
    body = table(
        ["config", "path", "tokens/s", "vs plain", "GFLOP/s (model)", "MFU (bf16 peak)"], rows
    )
    if targets:
        body += "\n\n" + table(
            ["config", "target val loss", "reached", "val loss", "steps", "seconds (incl. evals)"],
            targets,
        )
    notes = (
        f"FLOPs per token 6N + 12LTd. Device peak used for MFU: "
        f"{f'{peak / 1e12:.0f} TFLOP/s bf16' if peak else 'none (CPU)'} ({device_name(device)}). "
        "Targets: H100 val <= 1.47 in <= 90 s, MFU >= 30%; CPU val <= 2.0 within the 4-minute "
        "notebook budget."
    )
    record(
        "gpt: training throughput, fast paths, time to target",
        device,
        body,
        notes=notes,
        write=not args.no_record,
    )


if __name__ == "__main__":
    main()
