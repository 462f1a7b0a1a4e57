"""Seconds for PPO to reach a mean return of 475 over 100 evaluation episodes on CartPole-v1.

    python -m benchmarks.ppo              # seeds 0-4
    python -m benchmarks.ppo --quick      # CI-sized: seed 0 only

Training is ``dlbook.rl.train_ppo`` with its default configuration (32 environments x 128 steps
per update, GAE, clipped objective, CleanRL's implementation details); every 2 updates the greedy
policy plays 100 episodes, and the clock (wall and process CPU) stops when their mean first
reaches 475. The seconds include those evaluations. A final check plays 100 fresh episodes in
gymnasium's own CartPole-v1.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from benchmarks._common import parser, record, table


def main(argv=None) -> None:
    import dlbook
    from dlbook import rl

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (default 1)")
    args = p.parse_args(argv)
    device = torch.device(args.device) if args.device else dlbook.device()
    torch.set_num_threads(args.threads)
    seeds = [0] if args.quick else [0, 1, 2, 3, 4]
    rows = []
    for seed in seeds:
        wall, cpu = time.perf_counter(), time.process_time()
        agent, hist = rl.train_ppo(
            rl.PPOConfig(),
            seed=seed,
            device=device,
            target_return=475,
            eval_every=2,
            show_progress=False,
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        evals = hist.values("eval")
        reached = bool((evals >= 475).any())
        fresh = rl.evaluate_policy(
            lambda o, a=agent: a.act(o, greedy=True),
            100,
            env="gymnasium",
            seed=90_000,
            device=device,
        )
        rows.append(
            [
                seed,
                "yes" if reached else "no",
                f"{wall:.1f}",
                f"{cpu:.1f}",
                f"{hist.steps('eval')[-1]:,}",
                f"{evals[-1]:.1f}",
                f"{fresh.mean():.1f}",
            ]
        )
        print(rows[-1], flush=True)
    walls = [float(r[2]) for r in rows]
    body = table(
        [
            "seed",
            "reached 475",
            "wall s",
            "CPU s",
            "env steps",
            "eval mean at stop",
            "100 fresh gymnasium episodes",
        ],
        rows,
    )
    notes = (
        f"Median wall seconds to 475: {np.median(walls):.1f} (max {max(walls):.1f}). "
        "Targets: <= 60 s on the 2-core CPU, <= 15 s on a GPU."
    )
    record(
        "ppo: seconds to mean return 475 on CartPole-v1",
        device,
        body,
        notes=notes,
        write=not args.no_record,
    )


if __name__ == "__main__":
    main()
