"""Every benchmark in one command, recording each to RESULTS.md (and, on a GPU, the GPU tests).

    python -m benchmarks.all            # on a GPU machine: pytest -m gpu, then every benchmark
    python -m benchmarks.all --quick    # CI-sized versions
    python -m benchmarks.all --skip-book

On a CUDA machine this is the one command that produces the GPU figures of RESULTS.md: the GPU
tests (``pytest -m gpu``), the GPT fast paths and time to val loss 1.50, attention to 8k tokens,
CartPole at up to a million environments, PPO's seconds to 475, and every notebook under the
``full`` budget (the book benchmark executes the notebooks with the device's budget).
"""

from __future__ import annotations

import subprocess
import sys

import torch

from benchmarks import attention, book, gpt, ppo, rl_env


def main(argv=None) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--skip-book", action="store_true", help="skip executing every notebook")
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args(argv)
    common = (["--quick"] if args.quick else []) + (["--no-record"] if args.no_record else [])
    if torch.cuda.is_available():
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-m", "gpu", "-o", "addopts=", "-q", "tests"],
            check=False,
        )
        print(f"pytest -m gpu: exit {r.returncode}", flush=True)
    for module in (gpt, attention, rl_env, ppo):
        print(f"== {module.__name__}", flush=True)
        module.main(common)
    if not args.skip_book:
        print("== benchmarks.book", flush=True)
        book.main(common)


if __name__ == "__main__":
    main()
