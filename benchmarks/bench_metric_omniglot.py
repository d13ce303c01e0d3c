"""Metric-based meta-learners and the pre-train baselines on Omniglot, under
one meta-training time budget.

One table: ProtoNet, Matching, Siamese and Relation networks, pre-training +
nearest centroid (SimpleShot), pre-training + logistic regression, and 1-NN
on raw pixels as the floor, on 5-way 1-shot, 5-way 5-shot and 20-way 1-shot
test episodes, with meta-training time and adaptation latency.

Split: meta-train on the Balinese, Early_Aramaic, Greek, Korean, Latin and
Sanskrit alphabets (characters and their 90/180/270-degree rotations as
classes); meta-test on Japanese_(katakana) and Tagalog, never seen in
meta-training. Every learner uses the same Conv-4 and Adam (lr 1e-3) and is
stopped by skmeta.callbacks.TimeBudget after the same wall-clock budget.
Episodic learners train one model per test setting, on episodes of that
shape; the pre-trained backbone is trained once (same budget) and serves
both of its classifiers and all three settings.

    python benchmarks/bench_metric_omniglot.py            # full: 13 budgets of 120 s + evaluation, ~32 minutes
    python benchmarks/bench_metric_omniglot.py --quick    # smoke run, < 1 minute; prints, writes nothing

Writes docs/benchmarks/metric_omniglot.md (full mode only).
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

from skmeta import (
    EpisodeSampler,
    MatchingNetworkClassifier,
    PretrainedClassifier,
    ProtoNetClassifier,
    RelationNetworkClassifier,
    SiameseNetworkClassifier,
)
from skmeta.callbacks import TimeBudget
from skmeta.datasets import OMNIGLOT_TEST_ALPHABETS
from skmeta.datasets import load_omniglot
from skmeta.model_selection import EpisodicSplit, mean_confidence_interval
from skmeta.modules import Conv4
from skmeta.tasks import rotate_classes

ROOT = Path(__file__).resolve().parents[1]
TRAIN_ALPHABETS = ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin", "Sanskrit"]
TEST_ALPHABETS = list(OMNIGLOT_TEST_ALPHABETS)
SETTINGS = [(5, 1), (5, 5), (20, 1)]  # (n_way, k_shot) of the test episodes
EPISODIC = {
    "ProtoNet": ProtoNetClassifier,
    "Matching Networks": MatchingNetworkClassifier,
    "Siamese networks": SiameseNetworkClassifier,
    "Relation Networks": RelationNetworkClassifier,
}
PRETRAINED = {
    "Pre-train + nearest centroid (SimpleShot)": "centroid",
    "Pre-train + logistic regression": "logistic",
}
FLOOR = "1-NN on raw pixels"


def load_split(path, train_alphabets=TRAIN_ALPHABETS):
    data = load_omniglot(path)
    missing = sorted((set(train_alphabets) | set(TEST_ALPHABETS)) - set(data.alphabet_names))
    if missing:
        raise SystemExit(f"alphabets {missing} are not in {path}")
    train, test = np.isin(data.alphabet, train_alphabets), np.isin(data.alphabet, TEST_ALPHABETS)
    return (data.data[train], data.target[train]), (data.data[test], data.target[test])


def learner_params(args, budget_seconds):
    params = dict(module=Conv4, lr=1e-3, max_epochs=10**6, verbose=0, random_state=args.seed,
                  callbacks=[("budget", TimeBudget(budget_seconds))])
    if args.precision != "float32":
        params["precision"] = args.precision
    return params


def train_episodic(cls, train, n_way, k_shot, args, budget_seconds):
    # Fewer queries in 20-way episodes keep them a comparable size (Snell et al.).
    n_query = 15 if n_way <= 5 else 5
    tasks = EpisodeSampler(*train, n_way=n_way, k_shot=k_shot, n_query=n_query, n_tasks=100,
                           augment=rotate_classes(), random_state=args.seed)
    learner = cls(**learner_params(args, budget_seconds))
    start = time.perf_counter()
    learner.meta_fit(tasks)
    return learner, time.perf_counter() - start, _n_updates(learner)


def train_pretrained(train, args, budget_seconds):
    # The sampler's pool is what is pre-trained on (rotations as classes);
    # its episode shape does not matter.
    pool = EpisodeSampler(*train, n_way=5, k_shot=1, n_query=1, n_tasks=1, augment=rotate_classes(),
                          random_state=args.seed)
    learner = PretrainedClassifier(**learner_params(args, budget_seconds), batch_size=64)
    start = time.perf_counter()
    learner.meta_fit(pool)
    return learner, time.perf_counter() - start, _n_updates(learner)


def _n_updates(learner):
    return sum(len(epoch["batches"]) for epoch in learner.history)


def evaluate(learner, test, n_way, k_shot, n_episodes, seed):
    """Accuracy of each test episode and the latency of each ``fit``."""
    X, y = test
    cv = EpisodicSplit(n_way=n_way, k_shot=k_shot, n_query=15, n_episodes=n_episodes, random_state=seed)
    accuracy, latency = [], []
    for support, query in cv.split(X, y):
        start = time.perf_counter()
        learner.fit(X[support], y[support])
        latency.append(time.perf_counter() - start)
        accuracy.append(np.mean(learner.predict(X[query]) == y[query]))
    return np.array(accuracy), 1000 * float(np.median(latency))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--omniglot", default=str(ROOT.parent / "shared" / "data" / "omniglot"))
    parser.add_argument("--budget-seconds", type=float, default=120,
                        help="meta-training wall-clock budget of every model (default 120)")
    parser.add_argument("--episodes", type=int, default=600, help="test episodes per setting")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default 2; 1 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 s budgets, 2 training alphabets, 10 episodes; prints only")
    parser.add_argument("--note", help="a remark on the conditions of the run, shown after the machine line")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks" / "metric_omniglot.md"))
    args = parser.parse_args(argv)
    train_alphabets = TRAIN_ALPHABETS
    if args.quick:
        args.budget_seconds, args.episodes, train_alphabets = 1.0, 10, TRAIN_ALPHABETS[2::3]
    if args.threads is None:
        args.threads = 1 if args.quick else 2
    torch.set_num_threads(args.threads)
    # numpy/scipy's BLAS single-threaded: the adaptation problems (a logistic
    # regression on 5 to 25 examples) are so small that BLAS threads cost
    # more than they give, 175 ms instead of 3 ms per fit on a busy 2-core
    # machine. torch's own threads are unaffected.
    with threadpool_limits(1, user_api="blas"):
        run(args, train_alphabets)


def run(args, train_alphabets):
    def log(line):
        print(line, flush=True)

    train, test = load_split(args.omniglot, train_alphabets)
    args.train_alphabets = train_alphabets
    args.n_train_classes = 4 * len(np.unique(train[1]))  # with the three rotations
    log(f"meta-train: {len(np.unique(train[1]))} characters ({len(train[1])} images), x4 with rotations; "
        f"meta-test: {len(np.unique(test[1]))} characters ({len(test[1])} images)")

    # rows[name][(n_way, k_shot)] = (accuracies, fit latency ms); timing[name] = (seconds, updates) per model
    rows, timing = {}, {}
    for name, cls in EPISODIC.items():
        rows[name], timing[name] = {}, []
        for n_way, k_shot in SETTINGS:
            learner, seconds, updates = train_episodic(cls, train, n_way, k_shot, args, args.budget_seconds)
            timing[name].append((seconds, updates))
            rows[name][n_way, k_shot] = evaluate(learner, test, n_way, k_shot, args.episodes, args.seed)
            log(f"{name}, {n_way}-way {k_shot}-shot: {seconds:.0f} s, {updates} episodes, "
                f"{100 * rows[name][n_way, k_shot][0].mean():.2f} %")

    learner, seconds, updates = train_pretrained(train, args, args.budget_seconds)
    log(f"pre-training: {seconds:.0f} s, {updates} mini-batches of 64 in {len(learner.history)} epochs")
    for name, classifier in PRETRAINED.items():
        learner.set_params(classifier=classifier)
        rows[name] = {setting: evaluate(learner, test, *setting, args.episodes, args.seed) for setting in SETTINGS}
        timing[name] = [(seconds, updates)]
        log(f"{name}: " + ", ".join(f"{100 * acc.mean():.2f} %" for acc, _ in rows[name].values()))

    rows[FLOOR] = {setting: evaluate(KNeighborsClassifier(1), test, *setting, args.episodes, args.seed)
                   for setting in SETTINGS}
    timing[FLOOR] = [(0.0, 0)]

    lines = report(rows, timing, args)
    if args.quick:
        print("\n".join(lines))
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text("\n".join(lines))
        log(f"wrote {args.output}")


def report(rows, timing, args):
    cpu = platform.processor() or platform.machine()
    command = "python benchmarks/bench_metric_omniglot.py"
    if args.budget_seconds != 120:
        command += f" --budget-seconds {args.budget_seconds:g}"
    if args.precision != "float32":
        command += f" --precision {args.precision}"
    if args.threads != 2:
        command += f" --threads {args.threads}"
    settings = [f"{w}-way {k}-shot" for w, k in SETTINGS]
    lines = [
        "# Metric-based meta-learners and pre-train baselines on Omniglot",
        "",
        "Alphabet-held-out split of the two minimal background sets: meta-train on",
        f"{', '.join(args.train_alphabets)} (characters and their 90/180/270-degree",
        "rotations as classes); meta-test on Japanese_(katakana) and Tagalog, never seen in",
        "meta-training. Every learner: the same Conv-4 (64 channels, 64 features), Adam with",
        f"lr 1e-3, {args.precision}, stopped by `skmeta.callbacks.TimeBudget` after "
        f"{args.budget_seconds:g} s of meta-training.",
        "Episodic learners train one model per column, on training episodes of its shape (15",
        "queries per class in 5-way episodes, 5 in 20-way ones); the pre-trained backbone is",
        f"trained once, by classification over all {args.n_train_classes} meta-training classes in mini-batches of",
        "64, and serves both of its classifiers and every column. Matching Networks without full",
        "context embeddings, as Vinyals et al. report them on Omniglot. Every method at its",
        "defaults (Matching: the learned cosine scale; Siamese and Relation: the cross-entropy of",
        "the episode's classification).",
        "",
        f"Test: {args.episodes} episodes per column, 15 queries per class, the same episodes for",
        "every method; mean accuracy +- 95% confidence interval.",
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: {os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, "
        f"{args.threads} torch threads, single-threaded BLAS, no GPU. Date: {time.strftime('%Y-%m-%d')}."
        + (f" {args.note}" if args.note else ""),
        "",
        "| method | " + " | ".join(f"{s} (%)" for s in settings)
        + " | meta-training per model (s) | adaptation, 5-way 5-shot `fit` (ms) |",
        "| --- | " + " | ".join("---" for _ in settings) + " | --- | --- |",
    ]
    for name, results in rows.items():
        cells = []
        for setting in SETTINGS:
            mean, half = mean_confidence_interval(results[setting][0])
            cells.append(f"{100 * mean:.2f} +- {100 * half:.2f}")
        seconds = np.mean([s for s, _ in timing[name]])
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {seconds:.0f} | {results[5, 5][1]:.2f} |")
    lines += [
        "",
        "Meta-training time is the wall-clock time of `meta_fit`, budget overshoot (at most one",
        "meta-batch) and, for the pre-trained backbone, the pass that computes SimpleShot's mean",
        "feature included. Adaptation latency is the median over the test episodes of one `fit`",
        "on a support set: an embedding pass for the metric learners, plus a logistic",
        "regression for the pre-train + logistic regression baseline.",
        "",
        "## Meta-training work done in the budget",
        "",
        "| method | " + " | ".join(settings) + " |",
        "| --- | " + " | ".join("---" for _ in settings) + " |",
    ]
    for name in EPISODIC:
        lines.append(f"| {name} | " + " | ".join(f"{u} episodes" for _, u in timing[name]) + " |")
    seconds, updates = timing[next(iter(PRETRAINED))][0]
    lines += [
        f"| pre-training (both baselines) | {updates} mini-batches of 64, for all columns | | |",
        "",
        "## Adaptation latency per column (median `fit`, ms)",
        "",
        "| method | " + " | ".join(settings) + " |",
        "| --- | " + " | ".join("---" for _ in settings) + " |",
    ]
    for name, results in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{results[s][1]:.2f}" for s in SETTINGS) + " |")
    lines.append("")
    return lines


if __name__ == "__main__":
    sys.exit(main())
