"""The meta-learner LSTM next to MAML and Meta-SGD on sinusoid regression,
at equal CPU budgets, and its learned rule as an optimiser for new networks.

1. Meta-train MAML (1 and 5 inner steps), Meta-SGD (1 step) and MetaLSTM
   (5 steps of the learned rule) on 10-shot sinusoid tasks for the same
   wall-clock budget each (75 s by default, one thread), then report the
   query mean squared error after adaptation (the meta-training step count,
   and 10 steps) over 600 new tasks with 100 query points, mean +- 95% CI.
2. Train freshly initialised 40-40 MLPs on the support sets of 100 new
   tasks with MetaLSTM's learned rule (``as_optimizer``), Adam and SGD for
   the same number of steps; report the support loss reached.

    python benchmarks/bench_meta_lstm.py            # full: 4 x 75 s + evaluation, ~7 minutes
    python benchmarks/bench_meta_lstm.py --quick    # smoke run, < 1 minute, prints only

Writes docs/benchmarks/meta_lstm.md (full mode only).
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from skmeta import MAMLRegressor, MetaLSTMRegressor, MetaSGDRegressor
from skmeta.callbacks import TimeBudget
from skmeta.datasets import SinusoidTasks
from skmeta.model_selection import mean_confidence_interval
from skmeta.modules import MLP

ROOT = Path(__file__).resolve().parents[1]
# (name, class, inner steps, extra parameters). The rule's 14 parameters get
# a larger meta-learning rate than the network's, as they must move in
# logit space from their initial values within the budget.
CONFIGURATIONS = [
    ("MAML", MAMLRegressor, 1, {}),
    ("MAML", MAMLRegressor, 5, {}),
    ("Meta-SGD", MetaSGDRegressor, 1, {}),
    ("MetaLSTM", MetaLSTMRegressor, 5, {"optimizer__param_groups": [("gate_*", {"lr": 0.01})]}),
]
K_SHOT = 10


def meta_train(cls, inner_steps, extra, budget_seconds, batch_size, random_state=0):
    """Finn et al.'s setting: MLP 40-40 ReLU, inner step (initial input
    gate, initial learned rates) 0.01, K query points, Adam 1e-3."""
    learner = cls(
        module__hidden_sizes=(40, 40),
        inner_steps=inner_steps,
        inner_lr=0.01,
        lr=1e-3,
        batch_size=batch_size,
        max_epochs=10000,
        callbacks=[("budget", TimeBudget(budget_seconds))],
        verbose=0,
        random_state=random_state,
        **extra,
    )
    tasks = SinusoidTasks(n_tasks=100 * batch_size, k_shot=K_SHOT, n_query=K_SHOT, random_state=random_state)
    start = time.perf_counter()
    learner.meta_fit(tasks)
    seconds = time.perf_counter() - start
    iterations = sum(len(epoch["batches"]) for epoch in learner.history)
    return learner, iterations, seconds


def evaluate(learner, n_tasks, adapt_steps, random_state=1):
    learner.set_params(adapt_steps=adapt_steps)
    errors = []
    for task in SinusoidTasks(n_tasks=n_tasks, k_shot=K_SHOT, n_query=100, random_state=random_state):
        prediction = learner.fit(task.X_support, task.y_support).predict(task.X_query)
        errors.append(float(np.mean((prediction - task.y_query.numpy()) ** 2)))
    n_diverged = int(np.sum(~np.isfinite(errors)))
    if n_diverged:
        return f"diverges on {n_diverged} of {n_tasks} tasks"
    mean, half_width = mean_confidence_interval(errors)
    return f"{mean:.3f} +- {half_width:.3f}"


def fresh_network_losses(make_optimizer, n_tasks, n_steps, random_state=2):
    """Support MSE after ``n_steps`` from a fresh random initialisation, per task."""
    losses = []
    for seed, task in enumerate(SinusoidTasks(n_tasks=n_tasks, k_shot=K_SHOT, random_state=random_state)):
        with torch.random.fork_rng():
            torch.manual_seed(1000 + seed)
            network = MLP(in_features=1, hidden_sizes=(40, 40), out_features=1)
        optimizer = make_optimizer(network.parameters())
        X, y = task.X_support, task.y_support.reshape(-1, 1)

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(network(X), y)
            loss.backward()
            return loss

        for _ in range(n_steps):
            optimizer.step(closure)
        with torch.no_grad():
            losses.append(float(torch.nn.functional.mse_loss(network(X), y)))
    mean, half_width = mean_confidence_interval(losses)
    return f"{mean:.3f} +- {half_width:.3f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-seconds", type=float, default=75, help="meta-training budget per model")
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--test-tasks", type=int, default=600)
    parser.add_argument("--optimiser-tasks", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks" / "meta_lstm.md"))
    args = parser.parse_args(argv)
    if args.quick:
        args.budget_seconds, args.test_tasks, args.optimiser_tasks = 3, 50, 10
    torch.set_num_threads(args.threads)

    rows, meta_lstm = [], None
    for name, cls, inner_steps, extra in CONFIGURATIONS:
        learner, iterations, seconds = meta_train(cls, inner_steps, extra, args.budget_seconds, args.batch_size)
        trained_steps = evaluate(learner, args.test_tasks, adapt_steps=inner_steps)
        ten = evaluate(learner, args.test_tasks, adapt_steps=10)
        rows.append((name, inner_steps, iterations, seconds, trained_steps, ten))
        print(f"{name} ({inner_steps} inner steps): {iterations} meta-updates in {seconds:.0f}s; MSE after "
              f"{inner_steps} step(s) {trained_steps}, after 10 steps {ten}", flush=True)
        if cls is MetaLSTMRegressor:
            meta_lstm = learner

    optimisers = [
        ("MetaLSTM's learned rule (as_optimizer)", meta_lstm.as_optimizer),
        ("Adam, lr 1e-3 (default)", lambda p: torch.optim.Adam(p, lr=1e-3)),
        ("Adam, lr 1e-2", lambda p: torch.optim.Adam(p, lr=1e-2)),
        ("SGD, lr 0.01", lambda p: torch.optim.SGD(p, lr=0.01)),
    ]
    optimiser_rows = []
    for n_steps in (5, 20):
        for name, make in optimisers:
            result = fresh_network_losses(make, args.optimiser_tasks, n_steps)
            optimiser_rows.append((name, n_steps, result))
            print(f"fresh network, {name}, {n_steps} steps: support MSE {result}", flush=True)

    cpu = platform.processor() or platform.machine()
    lines = [
        "# The meta-learner LSTM on sinusoid regression",
        "",
        "Tasks of Finn et al. (2017): y = A sin(x - phase), A ~ U[0.1, 5], phase ~ U[0, pi],",
        f"x ~ U[-5, 5], {K_SHOT} support and {K_SHOT} query points. Every model is an MLP 40-40 ReLU",
        f"meta-trained for at most {args.budget_seconds:.0f} s of wall-clock time ({args.batch_size} tasks per",
        "meta-update, Adam 1e-3, second-order meta-gradients, inner step / initial learned rate /",
        "initial input gate 0.01). MetaLSTM's 14 gate parameters are meta-trained with Adam 1e-2",
        "(`optimizer__param_groups=[(\"gate_*\", {\"lr\": 0.01})]`). Evaluation: query mean squared error",
        f"on {args.test_tasks} new tasks (100 query points each) after adaptation, mean +- 95% confidence",
        "interval.",
        "",
        "Command:",
        "",
        "```",
        "taskset -c 1 python benchmarks/bench_meta_lstm.py",
        "```",
        "",
        f"Machine: {os.cpu_count()} CPU cores ({cpu}), run pinned to one of them, torch {torch.__version__}, "
        f"{args.threads} thread(s), no GPU. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "| method | inner steps | meta-updates | meta-training (s) | MSE, inner steps | MSE, 10 steps |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, inner_steps, iterations, seconds, trained_steps, ten in rows:
        lines.append(f"| {name} | {inner_steps} | {iterations} | {seconds:.0f} | {trained_steps} | {ten} |")
    lines += [
        "",
        "## The learned rule as an optimiser for new networks",
        "",
        f"Freshly initialised 40-40 MLPs (not the meta-learned initialisation) trained on the {K_SHOT}",
        f"support points of {args.optimiser_tasks} new sinusoid tasks; support mean squared error",
        "after the given number of steps, mean +- 95% confidence interval.",
        "",
        "| optimiser | steps | support MSE |",
        "| --- | --- | --- |",
    ]
    for name, n_steps, result in optimiser_rows:
        lines.append(f"| {name} | {n_steps} | {result} |")
    lines.append("")
    if args.quick:
        print("\n".join(lines))
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text("\n".join(lines))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
