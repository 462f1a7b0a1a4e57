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

Model FLOPs per token are ``6 N + 12 L T d``, the form of PaLM's appendix B (Chowdhery et al.,
2022) and of nanoGPT's ``estimate_mfu``: attention's two products counted over the full ``T x T``
square. (Kaplan et al., 2020, count ``6 N + 6 L T d`` with ``N`` the non-embedding parameters.)
``N`` is the parameters without the position embeddings, as nanoGPT's ``get_num_params`` (the
tied token matrix is the output projection, and counts). MFU divides the achieved FLOP/s by the
GPU's dense bf16 peak; on a CPU the achieved GFLOP/s are reported instead.

*dlbook vs reference*: ``dlbook.gpt.train_step`` on ``dlbook.gpt.GPT`` is timed against a plain
GPT written here in nanoGPT's ``model.py`` style (:class:`RefGPT`, with :func:`ref_train_step`),
at the device's configuration (on a GPU under bf16 autocast, as ``train_step`` runs there).
Before timing, the reference is checked against dlbook's model: the same number of parameters,
and, loaded with dlbook's weights, the same loss on a batch (eval mode, float32, within 1e-5).
Both then start from the same weights and see the same batches, *interleaved*: after warm-up,
blocks of steps of one and then the other, the order swapped every round, so that whatever else
the machine does falls on both alike. Each side's time per step is its median over the rounds;
the ratio dlbook / reference (target <= 1.0) is the ratio of the medians.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

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


def _step(model, opt, x, y, bf16: bool) -> torch.Tensor:
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
    return loss.detach()


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


# ----------------------------------------------------------------------------- the reference


class RefAttention(nn.Module):
    """nanoGPT's ``CausalSelfAttention``: one fused qkv Linear, PyTorch's fused causal kernel."""

    def __init__(self, config) -> None:
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=p, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class RefMLP(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class RefBlock(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = RefAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = RefMLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class RefGPT(nn.Module):
    """nanoGPT's ``GPT`` (``model.py``), training forward only: the plainest form of the model
    that ``dlbook.gpt.GPT`` is, against which its speed is measured."""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([RefBlock(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor):
        _, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        tok_emb = self.transformer.wte(idx)
        pos_emb = self.transformer.wpe(pos)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


# dlbook's parameter names -> the reference's
_NAMES = [
    ("blocks.", "transformer.h."),
    ("attn.qkv.", "attn.c_attn."),
    ("attn.proj.", "attn.c_proj."),
    ("mlp.fc.", "mlp.c_fc."),
    ("mlp.proj.", "mlp.c_proj."),
]


def ref_state_dict(dl_state: dict) -> dict:
    """dlbook's state dict under the reference's names (every key is renamed or kept)."""
    out = {}
    for name, tensor in dl_state.items():
        if name.split(".")[0] in ("wte", "wpe", "ln_f"):
            name = "transformer." + name
        for old, new in _NAMES:
            name = name.replace(old, new)
        out[name] = tensor
    return out


def ref_optimizer(model: nn.Module, *, lr: float) -> torch.optim.AdamW:
    """AdamW with dlbook.gpt.configure_optimizer's groups and defaults: decay on the matrices."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))


def ref_train_step(model, optimizer, x, y, *, bf16: bool) -> torch.Tensor:
    """The plain training step: forward (bf16 autocast on a GPU), backward, clip 1.0, update."""
    ctx = (
        torch.autocast(device_type=x.device.type, dtype=torch.bfloat16)
        if bf16
        else contextlib.nullcontext()
    )
    with ctx:
        _, loss = model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def matched_models(settings: dict, corpus, device: torch.device):
    """dlbook's GPT (fused attention, eager) and the reference holding the same weights, checked
    to compute the same thing: same parameter count, same float32 eval loss within 1e-5."""
    from dlbook import gpt

    cfg = gpt.GPTConfig(**settings["config"])
    torch.manual_seed(0)
    model = gpt.GPT(cfg)  # built and checked on the CPU, in float32, then moved
    ref = RefGPT(cfg)
    n_dl, n_ref = model.num_params(), sum(p.numel() for p in ref.parameters())
    assert n_dl == n_ref, f"the reference has {n_ref} parameters, dlbook's GPT {n_dl}"
    ref.load_state_dict(ref_state_dict(model.state_dict()), strict=True)
    assert ref.lm_head.weight is ref.transformer.wte.weight, "the reference lost its weight tying"
    gen = torch.Generator().manual_seed(1)
    x, y = gpt.get_batch(corpus.val, 8, cfg.block_size, generator=gen)
    model.eval(), ref.eval()
    with torch.no_grad():
        a, b = float(model(x, y)[1]), float(ref(x, y)[1])
    assert abs(a - b) <= 1e-5, f"dlbook's loss {a:.7f} but the reference's {b:.7f}"
    return model.to(device).train(), ref.to(device).train(), a


def interleaved(settings, corpus, device, *, rounds: int, steps: int, warmup: int) -> dict:
    """Seconds per training step of dlbook (``gpt.train_step``) and of the reference, in blocks
    of ``steps`` steps alternating over ``rounds`` rounds (order swapped each round), both
    from the same weights on the same batches; the medians over the rounds, and every round."""
    from dlbook import gpt

    model, ref, _ = matched_models(settings, corpus, device)
    lr = settings["lr"]
    opt, ref_opt = gpt.configure_optimizer(model, lr=lr), ref_optimizer(ref, lr=lr)
    bf16 = isinstance(gpt.autocast(device), torch.autocast)  # as gpt.train_step runs
    B, T = settings["batch"], settings["config"]["block_size"]
    gen = torch.Generator().manual_seed(0)
    batches = [gpt.get_batch(corpus.train, B, T, device=device, generator=gen) for _ in range(8)]

    def run_dlbook(n: int, start: int) -> torch.Tensor:
        for i in range(start, start + n):
            loss = gpt.train_step(model, opt, *batches[i % 8])
        return loss

    def run_ref(n: int, start: int) -> torch.Tensor:
        for i in range(start, start + n):
            loss = ref_train_step(ref, ref_opt, *batches[i % 8], bf16=bf16)
        return loss

    sides = {"dlbook": run_dlbook, "reference": run_ref}
    for fn in sides.values():
        float(fn(warmup, 0))
    times: dict[str, list[float]] = {name: [] for name in sides}
    losses = {}
    for r in range(rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for name in order:
            sync(device)
            start = time.perf_counter()
            loss = sides[name](steps, warmup + r * steps)
            losses[name] = float(loss)  # the one read of the block: it waits for the device
            sync(device)
            times[name].append((time.perf_counter() - start) / steps)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    return dict(
        median=med,
        ratio=med["dlbook"] / med["reference"],
        round_ratios=[a / b for a, b in zip(times["dlbook"], times["reference"])],
        losses=losses,
        bf16=bf16,
    )


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
        # projection's work, so it counts), as nanoGPT's estimate_mfu; the attention term 12LTd
        # is PaLM's (appendix B) and nanoGPT's, not Kaplan et al.'s 6LTd
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
    # dlbook vs the reference, interleaved, at the device's configuration
    name = "gpu" if device.type == "cuda" else "cpu"
    rounds, steps, warmup = (3, 5, 3) if args.quick else (10, 10, 10)
    cmp = interleaved(SETTINGS[name], corpus, device, rounds=rounds, steps=steps, warmup=warmup)
    ms = {side: 1e3 * t for side, t in cmp["median"].items()}
    compare = [
        name,
        "bf16 autocast" if cmp["bf16"] else "float32",
        f"{ms['dlbook']:.2f}",
        f"{ms['reference']:.2f}",
        f"{cmp['ratio']:.3f}",
        f"{min(cmp['round_ratios']):.3f} - {max(cmp['round_ratios']):.3f}",
        f"{rounds} x {steps}",
    ]
    print(compare, flush=True)
    body = table(
        ["config", "path", "tokens/s", "vs plain", "GFLOP/s (model)", "MFU (bf16 peak)"], rows
    )
    if targets:
        body += "\n\n" + table(
            ["config", "target val loss", "reached", "val loss", "steps", "seconds (incl. evals)"],
            targets,
        )
    body += "\n\n" + table(
        [
            "config",
            "precision",
            "dlbook ms/step",
            "reference ms/step",
            "dlbook / reference",
            "per-round ratios",
            "rounds x steps",
        ],
        [compare],
    )
    notes = (
        "FLOPs per token 6N + 12LTd (PaLM appendix B, nanoGPT's estimate_mfu). "
        "Device peak used for MFU: "
        f"{f'{peak / 1e12:.0f} TFLOP/s bf16' if peak else 'none (CPU)'} ({device_name(device)}). "
        "Targets: H100 val <= 1.47 in <= 90 s, MFU >= 30%; CPU val <= 2.0 within the 4-minute "
        "notebook budget. dlbook / reference: `gpt.train_step` on `dlbook.gpt.GPT` against a "
        "nanoGPT-style GPT and plain step (same weights, checked to give the same float32 loss "
        "within 1e-5; same batches), timed in alternating blocks after "
        f"{warmup} warm-up steps each; medians over the rounds; target <= 1.0. Losses after "
        f"the last block: dlbook {cmp['losses']['dlbook']:.4f}, "
        f"reference {cmp['losses']['reference']:.4f}."
    )
    record(
        "gpt: training throughput, fast paths, time to target, dlbook vs a plain reference",
        device,
        body,
        notes=notes,
        write=not args.no_record,
    )


if __name__ == "__main__":
    main()
