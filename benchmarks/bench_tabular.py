"""Tabular few-shot learning: new classes within a dataset, and new datasets
with features of their own, against scikit-learn baselines on the same episodes.

Within a dataset (letter: 13 meta-training letters, 13 meta-test letters;
texture: 6 and 5 classes): 5-way 1-shot and 5-shot, ProtoNet and MAML (when
``skmeta.MAMLClassifier`` exists) on an MLP behind a scaler fitted once at the
meta level (``MetaPipeline``), against 1-NN, logistic regression and random
forest behind the same frozen scaler.

Across datasets (the 35 KEEL/UCI datasets, nominal features one-hot
encoded): 5-fold leave-datasets-out rotation; ``FeatureVoteClassifier``
meta-trained on 28 datasets, tested on the 7 others at 2- to 5-way (as many
ways as a dataset has classes), 1, 5 and 10 shots, against the same three
baselines with a scaler fitted on each support set (the only data a new
dataset offers). ``InContextClassifier`` runs on the same episodes twice: with
its shipped weights, meta-trained on the synthetic prior only (no real
dataset, so every dataset is unseen by it), and meta-fitted further on each
fold's 28 meta-training datasets. Fit + predict latency per 5-way 5-shot episode
with 50 queries is timed for every method.

    python benchmarks/bench_tabular.py --threads 1 --jobs 1   # full: 35 minutes on one core
    python benchmarks/bench_tabular.py --quick    # smoke run, under a minute

Writes docs/benchmarks/tabular.md and docs/benchmarks/tabular_shots.png
(full mode only; --quick prints its table and plots to a temporary folder).
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import skmeta
from skmeta import EpisodeSampler, ProtoNetClassifier
from skmeta.datasets import list_tabular_datasets, load_tabular
from skmeta.model_selection import EpisodicSplit, mean_confidence_interval
from skmeta.pipeline import make_meta_pipeline
from skmeta.tabular import FeatureVoteClassifier, InContextClassifier
from skmeta.tasks import DatasetCollection, split_classes

ROOT = Path(__file__).resolve().parents[1]
WITHIN = {"letter": 13, "texture": 6}  # dataset -> meta-training classes
WITHIN_SHOTS = (1, 5)
ACROSS_SHOTS = (1, 5, 10)
N_FOLDS = 5
BASELINES = ("1-NN", "logistic regression", "random forest")
PRIOR_ONLY, FOLD_TUNED = "InContext (prior only)", "InContext (prior + fold's datasets)"
META_LEARNERS = ("FeatureVote", FOLD_TUNED, PRIOR_ONLY)
LATENCY_DATASETS = ("letter", "optdigits")  # 16 and 64 features


def baselines(scaler):
    """The scikit-learn baselines, each behind ``scaler``."""
    return {
        "1-NN": make_pipeline(scaler, KNeighborsClassifier(n_neighbors=1)),
        "logistic regression": make_pipeline(scaler, LogisticRegression(max_iter=1000)),
        "random forest": make_pipeline(scaler, RandomForestClassifier(random_state=0)),
    }


# ----------------------------------------------------------------------
# within one dataset
# ----------------------------------------------------------------------
def within_dataset(args, data_home, log):
    """{(dataset, method, k_shot): scores} over the same episodes per (dataset, k_shot)."""
    results, timings = {}, {}
    maml = getattr(skmeta, "MAMLClassifier", None)
    for name, n_train in list(WITHIN.items())[: args.within_datasets]:
        X, y = load_tabular(name, data_home=data_home, return_X_y=True)
        train, test = split_classes(y, train_size=n_train, random_state=0)
        scaler = StandardScaler().fit(X[train])
        for k_shot in WITHIN_SHOTS:
            tasks = EpisodeSampler(X[train], y[train], n_way=5, k_shot=k_shot, n_query=15,
                                   n_tasks=args.within_tasks, random_state=0)
            learners = {
                "ProtoNet (MLP)": ProtoNetClassifier(
                    module__hidden_sizes=(64,), module__out_features=64, lr=1e-3,
                    max_epochs=args.within_epochs, verbose=0, random_state=0),
            }
            if maml is not None:
                learners["MAML (MLP)"] = maml(
                    module__hidden_sizes=(64, 64), inner_steps=5, inner_lr=0.5, batch_size=4,
                    lr=1e-3, max_epochs=args.within_epochs, verbose=0, random_state=0)
            methods = {}
            for method, learner in learners.items():
                start = time.perf_counter()
                methods[method] = make_meta_pipeline(StandardScaler(), learner).meta_fit(tasks, X_pool=X[train])
                timings[(name, method, k_shot)] = time.perf_counter() - start
            methods.update(baselines(FrozenEstimator(scaler)))
            methods["1-NN, scaler fitted on the support set"] = make_pipeline(
                StandardScaler(), KNeighborsClassifier(n_neighbors=1))
            cv = EpisodicSplit(n_way=5, k_shot=k_shot, n_query=15, n_episodes=args.within_episodes, random_state=0)
            for method, estimator in methods.items():
                scores = cross_val_score(estimator, X[test], y[test], cv=cv, n_jobs=args.jobs)
                results[(name, method, k_shot)] = scores
                mean, half = mean_confidence_interval(scores)
                log(f"  {name} 5-way {k_shot}-shot {method}: {100 * mean:.2f} +- {100 * half:.2f}")
    return results, timings


# ----------------------------------------------------------------------
# across datasets
# ----------------------------------------------------------------------
def encoded(name, data_home):
    """Features as floats: nominal columns one-hot encoded with the dataset's
    categories (no labels involved), numeric ones as they are."""
    data = load_tabular(name, data_home=data_home)
    X = data.data
    if data.categorical_features.any():
        X = ColumnTransformer(
            [("nominal", OneHotEncoder(sparse_output=False), data.categorical_features)],
            remainder="passthrough",
        ).fit_transform(X)
    return np.asarray(X, dtype=np.float32), data.target


def folds(names, n_folds, random_state=0):
    """Leave-datasets-out rotation: each dataset is tested in exactly one fold."""
    order = np.random.RandomState(random_state).permutation(sorted(names))
    return [list(part) for part in np.array_split(order, n_folds)]


def across_datasets(args, data_home, log):
    """{(dataset, method, k_shot): scores} (episodes of every way, the same
    for every method) and meta-training seconds per fold."""
    names = list(list_tabular_datasets(data_home=data_home)["name"])
    data = {name: encoded(name, data_home) for name in names}
    results, timings = {}, {}
    # Trained on the prior only: one learner for every fold. Fitted once so
    # that its shipped weights are loaded before the episodes clone it.
    incontext = InContextClassifier(random_state=0).fit(*data[names[0]])
    for fold, test_names in enumerate(folds(names, N_FOLDS)[: args.folds]):
        train = {name: data[name] for name in names if name not in test_names}
        tasks = DatasetCollection(train, n_way=(2, 5), k_shot=(1, 10), n_query=10,
                                  n_tasks=args.across_tasks, random_state=fold)
        start = time.perf_counter()
        learner = FeatureVoteClassifier(max_epochs=args.across_epochs, verbose=0, random_state=0).meta_fit(tasks)
        timings[fold] = time.perf_counter() - start
        # The shipped weights, meta-fitted further on this fold's datasets.
        start = time.perf_counter()
        tuned = InContextClassifier(lr=args.incontext_lr, max_epochs=1, verbose=0, random_state=0).meta_fit(
            DatasetCollection(train, n_way=(2, 5), k_shot=(1, 10), n_query=10, n_tasks=args.incontext_tasks,
                              random_state=fold))
        timings[("tuning", fold)] = time.perf_counter() - start
        log(f"fold {fold}: meta-trained on {len(train)} datasets in {timings[fold]:.0f} s (FeatureVote), "
            f"{timings[('tuning', fold)]:.0f} s (InContext); testing on {', '.join(test_names)}")
        methods = {"FeatureVote": learner, FOLD_TUNED: tuned, PRIOR_ONLY: incontext, **baselines(StandardScaler())}
        for name in test_names[: args.datasets_per_fold]:
            X, y = data[name]
            n_classes = len(np.unique(y))
            for k_shot in ACROSS_SHOTS:
                # Every way from 2 to min(5, classes), as one list of episodes
                # (cross_val_score takes any iterable of splits).
                cv = [split for n_way in range(2, min(5, n_classes) + 1)
                      for split in EpisodicSplit(n_way=n_way, k_shot=k_shot, n_query=15,
                                                 n_episodes=args.across_episodes, random_state=0).split(X, y)]
                for method, estimator in methods.items():
                    results[(name, method, k_shot)] = cross_val_score(estimator, X, y, cv=cv, n_jobs=args.jobs)
            log("  " + name + ": " + ", ".join(
                f"{m} {100 * np.mean(results[(name, m, 5)]):.1f}" for m in methods) + " (5-shot)")
        for name in LATENCY_DATASETS:
            if name in test_names[: args.datasets_per_fold]:
                timings[("latency", name)] = latency(methods, *data[name], args.latency_episodes)
    return results, timings


def latency(methods, X, y, n_episodes):
    """Median milliseconds of fit + predict per 5-way 5-shot episode with 50
    queries, one method at a time on the same episodes."""
    splits = list(EpisodicSplit(n_way=5, k_shot=5, n_query=10, n_episodes=n_episodes, random_state=1).split(X, y))
    medians = {}
    for method, estimator in methods.items():
        times = []
        for support, query in splits:
            start = time.perf_counter()
            estimator.fit(X[support], y[support]).predict(X[query])
            times.append(time.perf_counter() - start)
        medians[method] = 1000 * float(np.median(times))
    return medians


# ----------------------------------------------------------------------
# report
# ----------------------------------------------------------------------
def _ci(scores):
    mean, half = mean_confidence_interval(scores)
    return f"{100 * mean:.2f} +- {100 * half:.2f}"


def _methods(results):
    return list(dict.fromkeys(method for _, method, _ in results))


def _datasets(results):
    return list(dict.fromkeys(name for name, _, _ in results))


def pooled(results, method, k_shot):
    return np.concatenate([s for (_, m, k), s in results.items() if m == method and k == k_shot])


def paired_difference(results, a, b, k_shot):
    """Per-episode accuracy of ``a`` minus ``b`` on the same episodes."""
    return pooled(results, a, k_shot) - pooled(results, b, k_shot)


def plot(within, across, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(f"{name}, new classes (5-way)", {k: v for k, v in within.items() if k[0] == name}, WITHIN_SHOTS)
              for name in _datasets(within)]
    panels.append(("new datasets (2- to 5-way)", across, ACROSS_SHOTS))
    # One colour per method across panels.
    colours = dict(zip(_methods({**within, **across}), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 2))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4), squeeze=False)
    for ax, (title, results, shots) in zip(axes[0], panels):
        for method in _methods(results):
            means, halves = zip(*(mean_confidence_interval(pooled(results, method, k)) for k in shots))
            ax.errorbar(shots, 100 * np.array(means), yerr=100 * np.array(halves), marker="o",
                        capsize=3, label=method, color=colours[method])
        ax.set(title=title, xlabel="shots per class (k)", ylabel="accuracy (%)", xticks=shots)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(args, within, within_times, across, across_times, seconds, plot_name):
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Tabular few-shot learning",
        "",
        "Command:",
        "",
        "```",
        " ".join(["python benchmarks/bench_tabular.py", *sys.argv[1:]]),
        "```",
        "",
        f"Machine: {os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, "
        f"{args.threads} torch threads, {args.jobs} joblib workers for episodes, no GPU. "
        f"Date: {time.strftime('%Y-%m-%d')}. Whole run: {seconds / 60:.1f} minutes.",
        "",
        f"![accuracy against shots]({plot_name})",
        "",
        "## Within a dataset: classes never seen in meta-training",
        "",
        "Classes split with `split_classes(y, train_size=..., random_state=0)`: "
        + ", ".join(f"{name} {n} meta-training classes" for name, n in WITHIN.items())
        + ", the rest for meta-testing. "
        f"{args.within_episodes} test episodes per setting, 15 queries per class, the same episodes "
        "for every method; mean accuracy (%) +- 95% confidence interval.",
        "",
        "Meta-learners: `make_meta_pipeline(StandardScaler(), learner)` meta-fitted on "
        f"5-way k-shot 15-query episodes of the meta-training classes ({args.within_tasks} per epoch, "
        f"{args.within_epochs} epochs, one model per k); the scaler is fitted once on the "
        "meta-training rows and frozen. Baselines sit behind the same frozen scaler; the last row "
        "re-fits a scaler on each support set, as a plain `make_pipeline` would.",
        "",
    ]
    for name in _datasets(within):
        lines += [f"### {name}", "", "| method | " + " | ".join(f"5-way {k}-shot" for k in WITHIN_SHOTS) + " |",
                  "| --- |" + " --- |" * len(WITHIN_SHOTS)]
        for method in _methods(within):
            cells = [_ci(within[(name, method, k)]) if (name, method, k) in within else "" for k in WITHIN_SHOTS]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Meta-training time (s): " + ", ".join(
        f"{name} {method} {k}-shot {t:.0f}" for (name, method, k), t in within_times.items()), ""]

    return lines + report_across(args, across, across_times)


def report_across(args, across, across_times):
    """The across-datasets section of the report, as lines of markdown."""
    lines = []
    methods = _methods(across)
    baseline_names = [m for m in methods if m in BASELINES]
    meta_names = [m for m in methods if m in META_LEARNERS]
    lines += [
        "## Across datasets: datasets never seen in meta-training",
        "",
        f"{N_FOLDS}-fold leave-datasets-out rotation over the {len(_datasets(across))} datasets "
        "(each tested once, by a learner that never saw it). `FeatureVoteClassifier` meta-trained on "
        f"`DatasetCollection(n_way=(2, 5), k_shot=(1, 10), n_query=10)`, {args.across_tasks} episodes "
        f"per epoch, {args.across_epochs} epochs per fold. Test: for each held-out dataset, every "
        f"n_way from 2 to min(5, classes) and each k, {args.across_episodes} episodes with 15 queries "
        "per class; the same episodes for every method. Baselines: `make_pipeline(StandardScaler(), "
        "classifier)` fitted on the support set. Nominal features are one-hot encoded with each "
        "dataset's categories (no labels involved) for every method.",
        "",
        f"`{PRIOR_ONLY}` is `InContextClassifier(random_state=0)` with its shipped weights (see "
        "docs/tabular.md), meta-trained on the synthetic prior `make_prior_tasks` only: no dataset of "
        "this table was used in any of its meta-training, so its column is the same for every fold "
        f"(4 ensemble members, the default). `{FOLD_TUNED}` starts from the same weights and is "
        f"meta-fitted on the fold's meta-training datasets: `InContextClassifier(lr={args.incontext_lr:g}, "
        "max_epochs=1).meta_fit(DatasetCollection(train, n_way=(2, 5), k_shot=(1, 10), n_query=10, "
        f"n_tasks={args.incontext_tasks}))`.",
        "",
        "Mean accuracy (%) +- 95% confidence interval over all test episodes:",
        "",
        "| method | " + " | ".join(f"{k}-shot" for k in ACROSS_SHOTS) + " |",
        "| --- |" + " --- |" * len(ACROSS_SHOTS),
    ]
    for method in methods:
        lines.append(f"| {method} | " + " | ".join(_ci(pooled(across, method, k)) for k in ACROSS_SHOTS) + " |")
    lines += ["", "Each meta-learner minus the best baseline at each k, on the same episodes (paired):", "",
              "| method | k | best baseline | difference (points) | datasets won / tied / lost |",
              "| --- | --- | --- | --- | --- |"]
    for meta in meta_names:
        for k in ACROSS_SHOTS:
            best = max(baseline_names, key=lambda m: pooled(across, m, k).mean())
            diff = paired_difference(across, meta, best, k)
            won = tied = lost = 0
            for name in _datasets(across):
                d = across[(name, meta, k)] - across[(name, best, k)]
                mean, half = mean_confidence_interval(d) if np.ptp(d) > 0 else (float(d.mean()), 0.0)
                won, tied, lost = won + (mean - half > 0), tied + (abs(mean) <= half), lost + (mean + half < 0)
            lines.append(f"| {meta} | {k} | {best} | {_ci(diff)} | {won} / {tied} / {lost} |")
    latencies = {key[1]: value for key, value in across_times.items() if isinstance(key, tuple) and key[0] == "latency"}
    if latencies:
        lines += ["", f"Fit + predict per 5-way 5-shot episode with 50 queries, median over "
                  f"{args.latency_episodes} episodes (ms, one method at a time, the machine above):", "",
                  "| dataset | " + " | ".join(methods) + " |", "| --- |" + " --- |" * len(methods)]
        for name, medians in latencies.items():
            lines.append(f"| {name} | " + " | ".join(f"{medians[m]:.1f}" for m in methods) + " |")
    lines += ["", "Per dataset, mean accuracy (%) over its episodes:", "",
              "| dataset | " + " | ".join(f"{m} {k}-shot" for k in ACROSS_SHOTS for m in methods) + " |",
              "| --- |" + " --- |" * (len(methods) * len(ACROSS_SHOTS))]
    for name in sorted(_datasets(across)):
        lines.append(f"| {name} | " + " | ".join(
            f"{100 * across[(name, m, k)].mean():.1f}" for k in ACROSS_SHOTS for m in methods) + " |")
    lines += ["", "Meta-training time per fold (s), FeatureVote: " + ", ".join(
        f"{t:.0f}" for key, t in across_times.items() if not isinstance(key, tuple))
        + "; InContext on the fold's datasets: " + ", ".join(
        f"{t:.0f}" for key, t in across_times.items() if isinstance(key, tuple) and key[0] == "tuning"), ""]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=str(ROOT.parent / "shared" / "data"),
                        help="folder holding tabular/ (the shared KEEL/UCI collection)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--jobs", type=int, default=2, help="joblib workers scoring episodes")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--incontext-tasks", type=int, default=4000,
                        help="tasks of each fold's datasets that InContextClassifier is meta-fitted on")
    parser.add_argument("--incontext-lr", type=float, default=3e-4, help="its step size there")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks" / "tabular.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # Full: 35 minutes on one core (2026-11-30), most of it the baselines
    # (the random forest takes about 200 ms per episode, the meta-learners
    # 4-17 ms) and 70 s per fold of InContext meta-fitting.
    full = dict(within_datasets=None, within_tasks=400, within_epochs=4, within_episodes=600,
                across_tasks=1000, across_epochs=4, across_episodes=10, folds=N_FOLDS, datasets_per_fold=None,
                latency_episodes=50)
    quick = dict(within_datasets=1, within_tasks=50, within_epochs=1, within_episodes=10,
                 across_tasks=100, across_epochs=1, across_episodes=3, folds=1, datasets_per_fold=2, incontext_tasks=100,
                 latency_episodes=5)
    for key, value in (quick if args.quick else full).items():
        setattr(args, key, value)

    def log(line):
        print(line, flush=True)

    start = time.perf_counter()
    log("within a dataset")
    within, within_times = within_dataset(args, args.data_home, log)
    log("across datasets")
    across, across_times = across_datasets(args, args.data_home, log)
    seconds = time.perf_counter() - start

    output = Path(args.output)
    folder = Path(tempfile.mkdtemp()) if args.quick else output.parent
    folder.mkdir(parents=True, exist_ok=True)
    plot_name = "tabular_shots.png"
    plot(within, across, folder / plot_name)
    lines = report(args, within, within_times, across, across_times, seconds, plot_name)
    if args.quick:
        print("\n".join(lines))
        print(f"(quick run: nothing written to docs; plot in {folder / plot_name})")
    else:
        output.write_text("\n".join(lines))
        print(f"wrote {output} and {folder / plot_name}")


if __name__ == "__main__":
    sys.exit(main())
