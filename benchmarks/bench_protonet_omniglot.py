"""Prototypical Networks on Omniglot: accuracy, meta-training throughput and
adaptation latency, on the alphabet-held-out split.

Meta-train on Balinese, Early_Aramaic, Greek, Korean, Latin and Sanskrit
(characters and their 90/180/270-degree rotations as classes), meta-test on
Japanese_(katakana) and Tagalog, which meta-training never sees.

    python benchmarks/bench_protonet_omniglot.py                 # full: ~15 minutes
    python benchmarks/bench_protonet_omniglot.py --sections throughput   # one section, ~1 minute
    python benchmarks/bench_protonet_omniglot.py --quick         # smoke run, ~1 minute

Writes docs/benchmarks/protonet_omniglot.md and its results cache
protonet_omniglot.json (full mode only).
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

from skmeta import EpisodeSampler, ProtoNetClassifier
from skmeta.datasets import OMNIGLOT_TEST_ALPHABETS
from skmeta.datasets import load_omniglot
from skmeta.model_selection import EpisodicSplit, mean_confidence_interval
from skmeta.modules import Conv4
from skmeta.tasks import rotate_classes

ROOT = Path(__file__).resolve().parents[1]
TEST_ALPHABETS = list(OMNIGLOT_TEST_ALPHABETS)  # the development split, as the CLI uses it


def load_split(path):
    data = load_omniglot(path)
    test = np.isin(data.alphabet, TEST_ALPHABETS)
    return (data.data[~test], data.target[~test]), (data.data[test], data.target[test])


def throughput(train, precision, n_episodes, random_state=0):
    """Meta-training episodes per second, 5-way 1-shot 15-query, Conv-4."""
    tasks = EpisodeSampler(*train, n_way=5, k_shot=1, n_query=15, n_tasks=n_episodes,
                           augment=rotate_classes(), random_state=random_state)
    learner = ProtoNetClassifier(Conv4, max_epochs=1, precision=precision, verbose=0, random_state=random_state)
    learner.meta_fit(EpisodeSampler(*train, n_way=5, k_shot=1, n_query=15, n_tasks=20, random_state=1))  # warm-up
    start = time.perf_counter()
    learner.partial_meta_fit(tasks, epochs=1)
    return n_episodes / (time.perf_counter() - start)


def adaptation_latency(learner, test, n_episodes=100, random_state=0):
    """Milliseconds for fit + predict of one 5-way 5-shot episode (75 queries), median."""
    X, y = test
    cv = EpisodicSplit(n_way=5, k_shot=5, n_query=15, n_episodes=n_episodes, random_state=random_state)
    times = []
    for support, query in cv.split(X, y):
        start = time.perf_counter()
        learner.fit(X[support], y[support]).predict(X[query])
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def meta_train(train, precision, budget_seconds, n_way, n_query, epoch_tasks, random_state=0, log=print):
    """Meta-train for a wall-clock budget, halving the learning rate at each
    quarter of it (Snell et al. halve it every 2000 episodes)."""
    tasks = EpisodeSampler(*train, n_way=n_way, k_shot=1, n_query=n_query, n_tasks=epoch_tasks,
                           augment=rotate_classes(), random_state=random_state)
    learner = ProtoNetClassifier(Conv4, lr=1e-3, max_epochs=1, precision=precision, verbose=0,
                                 random_state=random_state)
    start = time.perf_counter()
    learner.meta_fit(tasks)
    episodes = epoch_tasks
    while (elapsed := time.perf_counter() - start) < budget_seconds:
        quarter = int(4 * elapsed / budget_seconds)
        learner.set_params(lr=1e-3 * 0.5 ** quarter)
        learner.partial_meta_fit(tasks, epochs=1)
        episodes += epoch_tasks
        log(f"  {precision}: {episodes} episodes, {elapsed:.0f}s, train_loss "
            f"{learner.history[-1, 'train_loss']:.3f}, lr {learner.lr:.2e}")
    return learner, episodes, time.perf_counter() - start


def evaluate(learner, test, n_way, k_shot, n_episodes):
    X, y = test
    cv = EpisodicSplit(n_way=n_way, k_shot=k_shot, n_query=15, n_episodes=n_episodes, random_state=0)
    mean, half = mean_confidence_interval(cross_val_score(learner, X, y, cv=cv))
    return 100 * mean, 100 * half


def compare_precisions(train, test, n_episodes, n_eval):
    """The same 5-way 1-shot episodes in each precision: accuracy and time."""
    results = {}
    for precision in ("float32", "bfloat16"):
        tasks = EpisodeSampler(*train, n_way=5, k_shot=1, n_query=15, n_tasks=n_episodes,
                               augment=rotate_classes(), random_state=0)
        learner = ProtoNetClassifier(Conv4, max_epochs=1, precision=precision, verbose=0, random_state=0)
        start = time.perf_counter()
        learner.meta_fit(tasks)
        seconds = time.perf_counter() - start
        results[precision] = (seconds, evaluate(learner, test, 5, 1, n_eval))
    return results


SECTIONS = ("throughput", "compare", "accuracy")


def render(results, command, threads):
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Prototypical Networks on Omniglot",
        "",
        "Alphabet-held-out split of the two minimal background sets: meta-train on Balinese,",
        "Early_Aramaic, Greek, Korean, Latin, Sanskrit (178 characters, x4 with rotations);",
        "meta-test on Japanese_(katakana) and Tagalog (64 characters never seen in meta-training).",
        "Conv-4 backbone, Adam, 1-shot training episodes. Test episodes: 15 queries per class.",
        "",
        f"Machine: {os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, "
        f"{threads} threads, no GPU.",
        "",
        "Each section below was produced by the command shown with it; `--sections NAME` re-measures",
        "one section and keeps the others (from `protonet_omniglot.json` beside this page).",
    ]
    if "accuracy" in results:
        r = results["accuracy"]
        lines += [
            "",
            f"## Accuracy after {r['seconds'] / 60:.1f} minutes of meta-training",
            "",
            f"`{r['command']}` ({r['date']})",
            "",
            f"bfloat16 autocast, {r['n_way']}-way 1-shot {r['n_query']}-query training episodes "
            f"({r['episodes']} episodes, learning rate halved at each quarter of the budget), "
            f"{r['n_eval']} test episodes, mean +- 95% confidence interval.",
            "",
            "| test episodes | accuracy (%) |",
            "| --- | --- |",
            *[f"| {name} | {m:.2f} +- {h:.2f} |" for name, (m, h) in r["scores"].items()],
            "",
            "Adaptation latency: `fit` on a 5-way 5-shot support set plus `predict` on its 75 queries",
            "(median of 100 episodes), with the forward passes in each precision:",
            "",
            "| precision | milliseconds per episode |",
            "| --- | --- |",
            *[f"| {p} | {ms:.2f} |" for p, ms in r["latency_ms"].items()],
        ]
    if "throughput" in results:
        r = results["throughput"]
        lines += [
            "",
            "## Meta-training throughput",
            "",
            f"`{r['command']}` ({r['date']})",
            "",
            f"5-way 1-shot 15-query episodes, Conv-4, one episode per update, {r['episodes']} episodes",
            "through `meta_fit` (sampling, skorch loop, Adam step included), nothing else running.",
            "",
            "| precision | episodes/s |",
            "| --- | --- |",
            *[f"| {p} | {rate:.1f} |" for p, rate in r["rates"].items()],
            "",
            "For reference, the issue reports easyfsl 1.5.0's PrototypicalNetworks at 14.3 episodes/s",
            "on this machine with the same data, backbone and episode shape.",
        ]
    if "compare" in results:
        r = results["compare"]
        lines += [
            "",
            "## bfloat16 does not cost accuracy",
            "",
            f"`{r['command']}` ({r['date']})",
            "",
            f"The same {r['episodes']} 5-way 1-shot 15-query training episodes in each precision, "
            f"then {r['n_eval']} 5-way 1-shot test episodes.",
            "",
            "| precision | meta-training (s) | 5-way 1-shot accuracy (%) |",
            "| --- | --- | --- |",
            *[f"| {p} | {sec:.0f} | {m:.2f} +- {h:.2f} |" for p, (sec, (m, h)) in r["results"].items()],
        ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--omniglot", default=str(ROOT.parent / "shared" / "data" / "omniglot"))
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--budget-seconds", type=float, default=600)
    parser.add_argument("--train-way", type=int, default=20)
    parser.add_argument("--train-query", type=int, default=5)
    parser.add_argument("--compare-episodes", type=int, default=2000,
                        help="training episodes of the float32-vs-bfloat16 comparison (each)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks" / "protonet_omniglot.md"))
    args = parser.parse_args(argv)
    if args.quick:
        args.budget_seconds, args.compare_episodes = 20, 100
    torch.set_num_threads(args.threads)
    n_eval = 100 if args.quick else 600
    n_throughput = 60 if args.quick else 600
    command = " ".join(["python benchmarks/bench_protonet_omniglot.py", *(sys.argv[1:] if argv is None else argv)])
    date = time.strftime("%Y-%m-%d")

    output = Path(args.output)
    cache = output.with_suffix(".json")
    results = json.loads(cache.read_text()) if cache.exists() and not args.quick else {}
    train, test = load_split(args.omniglot)

    if "throughput" in args.sections:
        rates = {p: throughput(train, p, n_throughput) for p in ("float32", "bfloat16")}
        print(f"throughput: {rates} episodes/s", flush=True)
        results["throughput"] = dict(command=command, date=date, episodes=n_throughput, rates=rates)
    if "compare" in args.sections:
        compared = compare_precisions(train, test, args.compare_episodes, n_eval)
        print(f"compare: {compared}", flush=True)
        results["compare"] = dict(command=command, date=date, episodes=args.compare_episodes,
                                  n_eval=n_eval, results=compared)
    if "accuracy" in args.sections:
        learner, episodes, seconds = meta_train(train, "bfloat16", args.budget_seconds, args.train_way,
                                                args.train_query, 500)
        scores = {f"{w}-way {k}-shot": evaluate(learner, test, w, k, n_eval)
                  for w, k in ((5, 1), (5, 5), (20, 1), (20, 5))}
        latency = {p: adaptation_latency(clone(learner).set_params(precision=p), test)
                   for p in ("float32", "bfloat16")}
        print(f"accuracy: {scores}; latency {latency} ms", flush=True)
        results["accuracy"] = dict(command=command, date=date, seconds=seconds, episodes=episodes,
                                   n_way=args.train_way, n_query=args.train_query, n_eval=n_eval,
                                   scores=scores, latency_ms=latency)

    page = render(results, command, args.threads)
    if args.quick:
        print(page)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(results, indent=1))
        output.write_text(page)
        print(f"wrote {output}")


if __name__ == "__main__":
    sys.exit(main())
