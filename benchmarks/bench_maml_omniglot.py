"""MAML, second and first order, on Omniglot 5-way 1-shot, alphabet-held-out.

Meta-train on Balinese, Early_Aramaic, Greek, Korean, Latin and Sanskrit
(characters and their 90/180/270-degree rotations as classes), meta-test on
Japanese_(katakana) and Tagalog, which meta-training never sees (the split of
bench_protonet_omniglot.py). Each order is meta-trained for a wall-clock
budget (15 minutes by default) in Finn et al.'s Omniglot setting: Conv-4,
one inner step of size 0.4, Adam 1e-3, one query per class in meta-training
tasks; ``--zero-head`` adds Kao et al.'s zeroing trick and ``--train-way``
meta-trains on more classes per task than the 5 of the test tasks. Accuracy
over 600 test episodes after 1 and 3 adaptation steps, mean +- 95%
confidence interval.

    python benchmarks/bench_maml_omniglot.py            # full: 2 x 15 minutes + evaluation, ~33 minutes
    python benchmarks/bench_maml_omniglot.py --quick    # smoke run, < 1 minute, prints only

Writes docs/benchmarks/maml_omniglot.md (full mode only).
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch
from sklearn.model_selection import cross_val_score

from skmeta import EpisodeSampler, MAMLClassifier
from skmeta.callbacks import TimeBudget
from skmeta.model_selection import EpisodicSplit, mean_confidence_interval
from skmeta.modules import Conv4
from skmeta.tasks import rotate_classes

from bench_protonet_omniglot import load_split  # the same alphabet-held-out split

ROOT = Path(__file__).resolve().parents[1]
def meta_train(train, first_order, budget_seconds, batch_size, n_query, precision, zero_head=False, train_way=5,
               random_state=0):
    tasks = EpisodeSampler(*train, n_way=train_way, k_shot=1, n_query=n_query, n_tasks=50 * batch_size,
                           augment=rotate_classes(), random_state=random_state)
    learner = MAMLClassifier(
        Conv4,
        module__out_features=train_way,  # 5-way test tasks are scored on the first 5 outputs
        inner_steps=1,
        inner_lr=0.4,
        first_order=first_order,
        zero_head=zero_head,
        lr=1e-3,
        batch_size=batch_size,
        max_epochs=10**6,  # the time budget stops meta-training
        precision=precision,
        callbacks=[("budget", TimeBudget(budget_seconds))],
        verbose=0,
        random_state=random_state,
    )
    start = time.perf_counter()
    learner.meta_fit(tasks)
    seconds = time.perf_counter() - start
    updates = sum(len(epoch["batches"]) for epoch in learner.history)
    return learner, updates, seconds


def evaluate(learner, test, adapt_steps, n_episodes):
    X, y = test
    learner.set_params(adapt_steps=adapt_steps)
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=15, n_episodes=n_episodes, random_state=0)
    mean, half_width = mean_confidence_interval(cross_val_score(learner, X, y, cv=cv))
    return 100 * mean, 100 * half_width


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--omniglot", default=str(ROOT.parent / "shared" / "data" / "omniglot"))
    parser.add_argument("--budget-seconds", type=float, default=900, help="meta-training budget per order")
    # Finn et al. use 32 tasks per meta-update; on 2 CPU cores 8 gives four
    # times as many updates in the same budget.
    parser.add_argument("--batch-size", type=int, default=8)
    # Finn et al.'s code draws 2K examples per class for a K-shot training
    # task: one query per class in 1-shot, which keeps second order cheap.
    parser.add_argument("--n-query", type=int, default=1, help="query examples per class in meta-training")
    parser.add_argument("--zero-head", action="store_true",
                        help="Kao et al.'s zeroing trick: every adaptation starts from a zero output layer")
    parser.add_argument("--train-way", type=int, default=5, help="classes per meta-training task")
    parser.add_argument("--adapt-steps", type=int, nargs="+", default=[1, 3], help="adaptation steps at test time")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--test-episodes", type=int, default=600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--orders", nargs="+", choices=["second", "first"], default=["second", "first"],
                        help="which MAML orders to run (separate processes can run one each)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks" / "maml_omniglot.md"))
    args = parser.parse_args(argv)
    if args.quick:
        args.budget_seconds, args.test_episodes, args.batch_size = 5, 10, 2
    torch.set_num_threads(args.threads)
    train, test = load_split(args.omniglot)

    rows = []
    for first_order in [order == "first" for order in args.orders]:
        order = "first order" if first_order else "second order"
        learner, updates, seconds = meta_train(train, first_order, args.budget_seconds, args.batch_size,
                                               args.n_query, args.precision, args.zero_head, args.train_way)
        accuracy = {steps: evaluate(learner, test, steps, args.test_episodes) for steps in args.adapt_steps}
        rows.append((order, updates, seconds, accuracy))
        print(f"MAML {order}: {updates} meta-updates ({updates * args.batch_size} tasks) in {seconds:.0f}s; "
              + "; ".join(f"{s} step(s): {m:.2f} +- {h:.2f} %" for s, (m, h) in accuracy.items()), flush=True)

    cpu = platform.processor() or platform.machine()
    command = " ".join(["python benchmarks/bench_maml_omniglot.py", *(sys.argv[1:] if argv is None else argv)])
    lines = [
        "# MAML on Omniglot, 5-way 1-shot, alphabet-held-out",
        "",
        "Meta-train on Balinese, Early_Aramaic, Greek, Korean, Latin and Sanskrit (characters and",
        "their rotations as classes); meta-test on Japanese_(katakana) and Tagalog, never seen in",
        "meta-training. Conv-4 with task batch norm (support-set statistics), one inner step of 0.4,",
        f"Adam 1e-3, {args.batch_size} tasks per meta-update, {args.train_way}-way 1-shot {args.n_query}-query "
        f"training tasks, {args.precision}, "
        + ("zeroing trick (`zero_head=True`: every adaptation starts from a zero output layer)."
           if args.zero_head else "meta-learned output layer (Finn et al.'s MAML)."),
        f"Test: {args.test_episodes} episodes of 5-way 1-shot with 15 queries per class, accuracy",
        "mean +- 95% confidence interval.",
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: {os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, "
        f"{args.threads} threads, no GPU. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "| MAML | meta-updates | meta-training (min) | "
        + " | ".join(f"accuracy, {s} step{'s' * (s != 1)} (%)" for s in args.adapt_steps) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in args.adapt_steps) + " |",
    ]
    for order, updates, seconds, accuracy in rows:
        lines.append(f"| {order} | {updates} | {seconds / 60:.1f} | "
                     + " | ".join(f"{m:.2f} +- {h:.2f}" for m, h in accuracy.values()) + " |")
    lines += ["", "Target of the issue: >= 95% after <= 15 minutes of CPU meta-training.", ""]
    for order, _, seconds, accuracy in rows:
        best = max(m for m, _ in accuracy.values())
        met = best >= 95 and seconds <= 15 * 60 + 30  # one meta-batch past the budget
        lines.append(f"- {order}: best {best:.2f} % after {seconds / 60:.1f} min, {'met' if met else 'not met'}.")
    lines.append("")
    if args.quick:
        print("\n".join(lines))
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text("\n".join(lines))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
