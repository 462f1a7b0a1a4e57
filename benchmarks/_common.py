"""What every benchmark shares: the machine's description, timing, and the results file."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")


def device_name(device: torch.device) -> str:
    """``NVIDIA H100 80GB HBM3`` on a GPU; the CPU model and core count on a CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def machine_line(device: torch.device) -> str:
    return (
        f"device: {device_name(device)} | torch {torch.__version__} | "
        f"python {platform.python_version()} | {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(
    fn: Callable[[], object],
    device: torch.device,
    *,
    repeat: int = 5,
    warmup: int = 1,
    min_time: float = 0.0,
) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs (GPU-synchronised)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
        if min_time and sum(times) > min_time and len(times) >= 3:
            break
    return statistics.median(times)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""

    def cell(x: object) -> str:
        if isinstance(x, float):
            return f"{x:.4g}"
        return str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def record(
    name: str, device: torch.device, body: str, *, notes: str = "", write: bool = True
) -> str:
    """Print a result section and (if ``write``) append it to RESULTS.md; return the section."""
    section = f"\n## {name}\n\n{machine_line(device)}\n\n{body}\n"
    if notes:
        section += f"\n{notes}\n"
    print(section)
    if not write:
        return section
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Benchmark results\n\nAppended by `python -m benchmarks.NAME`; newest last. Each "
            "section names the machine it ran on. Ratios are measured side by side in one run.\n"
        )
    with RESULTS.open("a") as f:
        f.write(section)
    return section


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: dlbook.device())")
    p.add_argument("--quick", action="store_true", help="CI-sized run: fewer sizes and repeats")
    p.add_argument("--no-record", action="store_true", help="print only; do not touch RESULTS.md")
    return p
