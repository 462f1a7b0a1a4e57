"""Steps per second: dlbook.rl's batched CartPole against gymnasium's vectorised CartPole.

    python -m benchmarks.rl_env             # N = 256, 4096, 65536
    python -m benchmarks.rl_env --quick     # CI-sized: N = 256, 4096, fewer steps

Gymnasium's reference is ``gymnasium.make_vec("CartPole-v1", num_envs=N,
vectorization_mode="vector_entry_point")``: its own NumPy-vectorised CartPole (one array program
for N environments, with auto-reset), the fastest CartPole gymnasium ships. Both run the same
random actions (pre-generated, so random number generation is not timed); both auto-reset. Each
rate is the best of three runs, interleaved, as ``timeit`` reports the best of its repeats.
dlbook's CPU float32 step runs plain (some thirty small tensor operations) and compiled
(``CartPole(compile=True)``: ``torch.compile`` fuses the step but its reset into one kernel; the
compile time is reported apart). float64 is the exact-to-gymnasium path (NumPy's sin and cos). On a
GPU, dlbook's environment also runs on the GPU (float32); gymnasium's stays on the CPU.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import torch

from benchmarks._common import parser, record, sync, table


def dlbook_rate(
    n: int, steps: int, device: torch.device, dtype: torch.dtype, compile: bool = False
) -> float:
    from dlbook.rl import CartPole

    env = CartPole(n, device=device, dtype=dtype, seed=0, compile=compile)
    env.reset()
    actions = torch.randint(0, 2, (steps, n), device=device, generator=None)
    for k in range(min(10, steps)):  # warm-up
        env.step(actions[k])
    sync(device)
    start = time.perf_counter()
    for k in range(steps):
        env.step(actions[k])
    sync(device)
    return n * steps / (time.perf_counter() - start)


def gymnasium_rate(n: int, steps: int) -> float:
    envs = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
    envs.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 2, size=(steps, n))
    for k in range(min(10, steps)):
        envs.step(actions[k])
    start = time.perf_counter()
    for k in range(steps):
        envs.step(actions[k])
    rate = n * steps / (time.perf_counter() - start)
    envs.close()
    return rate


def main(argv=None) -> None:
    import dlbook

    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    device = torch.device(args.device) if args.device else dlbook.device()
    sizes = [256, 4096] if args.quick else [256, 4096, 65536]
    rows = []
    for n in sizes:
        steps = max(20, min(2000, 2_000_000 // n)) if not args.quick else max(10, 200_000 // n)
        cpu = torch.device("cpu")
        start = time.perf_counter()
        cpu_c = dlbook_rate(n, steps, cpu, torch.float32, compile=True)
        compile_s = time.perf_counter() - start - n * steps / cpu_c
        # best of three, interleaved, so that a slow moment of a shared machine hits both sides
        gym_r = cpu32 = cpu64 = 0.0
        for _ in range(3):
            gym_r = max(gym_r, gymnasium_rate(n, steps))
            cpu32 = max(cpu32, dlbook_rate(n, steps, cpu, torch.float32))
            cpu_c = max(cpu_c, dlbook_rate(n, steps, cpu, torch.float32, compile=True))
            cpu64 = max(cpu64, dlbook_rate(n, steps, cpu, torch.float64))
        row = [
            n,
            steps,
            f"{gym_r / 1e6:.2f}",
            f"{cpu32 / 1e6:.2f}",
            f"{cpu32 / gym_r:.2f}x",
            f"{cpu_c / 1e6:.2f}",
            f"{cpu_c / gym_r:.2f}x",
            f"{compile_s:.0f}",
            f"{cpu64 / 1e6:.2f}",
        ]
        if device.type == "cuda":
            gpu = dlbook_rate(n, steps, device, torch.float32)
            gpu_c = dlbook_rate(n, steps, device, torch.float32, compile=True)
            row += [f"{gpu / 1e6:.2f}", f"{gpu_c / 1e6:.2f}", f"{max(gpu, gpu_c) / gym_r:.1f}x"]
        rows.append(row)
        print(row, flush=True)
    if device.type == "cuda":  # the GPU's scale: many more environments
        for n in [262_144, 1_048_576]:
            gpu = dlbook_rate(n, 200, device, torch.float32)
            gpu_c = dlbook_rate(n, 200, device, torch.float32, compile=True)
            rows.append([n, 200, *[""] * 7, f"{gpu / 1e6:.2f}", f"{gpu_c / 1e6:.2f}", ""])
    header = [
        "N envs",
        "steps",
        "gymnasium M steps/s",
        "dlbook f32 CPU M/s",
        "ratio",
        "dlbook f32 CPU compiled M/s",
        "ratio",
        "compile s",
        "dlbook f64 CPU M/s",
    ]
    if device.type == "cuda":
        header += ["dlbook f32 GPU M/s", "compiled GPU M/s", "GPU ratio"]
    notes = (
        "Reference: gymnasium.make_vec('CartPole-v1', vectorization_mode='vector_entry_point'), "
        "NumPy-vectorised, CPU. Same random actions for both; auto-reset on; best of three "
        "interleaved runs each. Targets: >= 1.0x "
        "gymnasium at N = 4096 on the 2-core CPU; >= 50 M steps/s on a GPU."
    )
    record(
        "rl_env: batched CartPole steps per second",
        device,
        table(header, rows),
        notes=notes,
        write=not args.no_record,
    )


if __name__ == "__main__":
    main()
