"""Time of one meta-update of sinusoid MAML, task intake included: the host
cost that a wall-clock budget (docs/benchmarks/sinusoid.md) turns into fewer
meta-updates, and the per-task checks of meta-training's intake.

Best of ``--repeats`` passes of 100 meta-updates of 25 ten-shot tasks (MLP
40-40, one inner step), one thread, after a warm-up pass; then the time to
encode (check and convert) one task.

    python benchmarks/bench_meta_update.py
    # the same for another commit, e.g. the sinusoid page's run of 2026-11-25:
    git worktree add /tmp/old a99a82b && PYTHONPATH=/tmp/old python benchmarks/bench_meta_update.py

Prints only; the figures it gave are quoted, with their commits, where used.
"""

import argparse
import time

import torch

from skmeta import MAMLRegressor
from skmeta.datasets import SinusoidTasks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tasks = SinusoidTasks(n_tasks=2500, k_shot=10, n_query=10, random_state=0)
    learner = MAMLRegressor(module__hidden_sizes=(40, 40), inner_steps=1, inner_lr=0.01, lr=1e-3, batch_size=25,
                            max_epochs=1, verbose=0, random_state=0)
    learner.meta_fit(tasks)  # warm-up
    best = min(_seconds(lambda: learner.meta_fit(tasks)) for _ in range(args.repeats))
    print(f"meta-update (25 tasks, task intake included): {best / 100 * 1000:.2f} ms")
    encode = getattr(learner, "_encode_task", None)
    if encode is not None:
        listed = list(tasks)
        per_task = min(_seconds(lambda: [encode(task) for task in listed]) for _ in range(args.repeats))
        print(f"task intake (checks and conversion): {per_task / len(listed) * 1e6:.0f} us per task")


def _seconds(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
