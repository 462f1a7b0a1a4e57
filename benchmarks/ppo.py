"""Seconds for PPO to reach a mean return of 475 over 100 evaluation episodes on CartPole-v1.

    python -m benchmarks.ppo              # seeds 0-4
    python -m benchmarks.ppo --quick      # seed 0 only (the GPU command's form)
    python -m benchmarks.ppo --smoke      # the rehearsal: seed 0, training cut to two iterations

Training is ``dlbook.rl.train_ppo`` with its default configuration (32 environments x 128 steps
per iteration, GAE, clipped objective, CleanRL's implementation details); every 2 iterations the
greedy policy plays 100 episodes, and the clock (wall and process CPU) stops when their mean first
reaches 475. The seconds include those evaluations. A final check plays 100 fresh episodes in
gymnasium's own CartPole-v1.

``--smoke`` (what ``python -m benchmarks.gpu --smoke``, and so CI, runs) caps training at 8,192
steps: it runs every line of the benchmark but does not reach 475, so its table says "no". That
PPO reaches the target on a CPU is checked once per CI run, by the chapter's notebook
(``chapters/05-rl/cartpole.ipynb`` trains to 490 and asserts 475 on fresh gymnasium episodes).
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
    p.add_argument("--smoke", action="store_true", help="rehearsal: seed 0, two iterations")
    args = p.parse_args(argv)
    device = torch.device(args.device) if args.device else dlbook.device()
    torch.set_num_threads(args.threads)
    seeds = [0] if args.quick or args.smoke else [0, 1, 2, 3, 4]
    cfg = rl.PPOConfig(total_timesteps=8_192) if args.smoke else rl.PPOConfig()
    rows = []
    for seed in seeds:
        wall, cpu = time.perf_counter(), time.process_time()
        run = rl.train_ppo(
            cfg, seed=seed, device=device, target_return=475, eval_every=2, progress="off"
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        agent, hist = run.model, run.history
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
    walls = [float(r[2]) for r in rows if r[1] == "yes"]  # of the seeds that reached 475
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
    if args.smoke:
        notes = "Rehearsal (--smoke): training cut to 8,192 steps; these are not results. "
    elif walls:
        notes = f"Median wall seconds to 475: {np.median(walls):.1f} (max {max(walls):.1f}). "
    else:
        notes = "No seed reached 475. "
    notes += "Targets: <= 60 s on the 2-core CPU, <= 15 s on a GPU."
    record(
        "ppo: seconds to mean return 475 on CartPole-v1",
        device,
        body,
        notes=notes,
        write=not args.no_record,
    )


if __name__ == "__main__":
    main()
