"""Learned hyper-parameters on datasets never seen in meta-training: MetaSearchCV
with 8 candidates against scikit-learn's defaults, RandomizedSearchCV with the
same 8 candidates' budget, and a grid search over the whole pool (the ceiling).

The 35 KEEL/UCI datasets of the tabular collection (nominal features one-hot
encoded), in the 5-fold leave-datasets-out rotation of bench_tabular.py: each
fold meta-fits on 28 datasets and tests on the 7 others. Every dataset is split
once into a training part (up to 100 rows, or 10 rows per class in the few-shot
setting) and a test part (up to 500 of the other rows); every method fits on
the training part, with 3-fold cross-validation inside, and is scored on the
test part. Meta-training sees the other datasets whole and evaluates the pool
on 5 splits of each shaped like the test setting (``meta_cv``: a training part
of that size, a test part of up to 500 other rows), so that experience measures
generalisation from a small training set; a variant meta-fits on the other
datasets' training parts only, with the same 3-fold cross-validation as the
searches. A dataset's pool evaluations are computed once and cached
(``memory=``) for the four folds that meta-train on it.

    python benchmarks/bench_meta_search.py            # about 25 minutes of one CPU thread
    python benchmarks/bench_meta_search.py --quick    # 10 datasets, a smoke run

    # the same on two cores: one process per group of estimators, then the report
    python benchmarks/bench_meta_search.py --estimator "gradient boosting" --json /tmp/a.json &
    python benchmarks/bench_meta_search.py --estimator "random forest" --estimator "SVC pipeline" --json /tmp/b.json
    wait; python benchmarks/bench_meta_search.py --merge /tmp/a.json /tmp/b.json

Writes docs/benchmarks/meta_search.md (full mode and --merge; --quick prints it).
"""

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sklearn
from joblib import Memory
from scipy import stats
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tabular import N_FOLDS, encoded, folds  # noqa: E402  (same data encoding and folds)

from skmeta.datasets import list_tabular_datasets  # noqa: E402
from skmeta.model_selection import MetaSearchCV  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CV = 3
META_SPLITS = 5
RANDOM_DRAWS = 5
N_CANDIDATES = 8
N_NEIGHBORS = 10
MAX_TRAIN, MAX_TEST, FEW_SHOT = 100, 500, 10

# Each pool holds scikit-learn's default configuration, so the grid's ceiling
# can always fall back on it. The forest and boosting sizes are fixed below
# their defaults to keep the run within budget.
ESTIMATORS = {
    "random forest": (
        RandomForestClassifier(n_estimators=10, random_state=0),
        {"max_features": ["sqrt", 0.25, 0.5, 1.0], "min_samples_leaf": [1, 3, 10], "criterion": ["gini", "entropy"]},
    ),
    "gradient boosting": (
        HistGradientBoostingClassifier(max_iter=25, random_state=0),
        {"learning_rate": [0.1, 0.3], "max_leaf_nodes": [7, 31], "min_samples_leaf": [2, 5, 20],
         "l2_regularization": [0.0, 1.0]},
    ),
    "SVC pipeline": (
        make_pipeline(StandardScaler(), SVC()),
        {"svc__C": [0.1, 1, 10, 100], "svc__gamma": ["scale", 0.001, 0.01, 0.1, 1, 10]},
    ),
}
SETTINGS = {f"up to {MAX_TRAIN} rows": "rows", f"{FEW_SHOT} rows per class": "few-shot"}
METHODS = ("defaults", "RandomizedSearchCV (8)", "MetaSearchCV (8)", "MetaSearchCV (8), selection='cv'",
           f"MetaSearchCV (8), {N_NEIGHBORS} nearest", "MetaSearchCV (8), meta-fit on training parts",
           "grid over the pool (ceiling)")


def split(X, y, setting, seed):
    """(X_train, y_train, X_test, y_test) of one dataset, stratified."""
    rng = np.random.RandomState(seed)
    if setting == "few-shot":
        train = np.concatenate([
            rng.choice(np.flatnonzero(y == c), min(FEW_SHOT, (y == c).sum() // 2), replace=False)
            for c in np.unique(y)
        ])
        rest = np.setdiff1d(np.arange(len(y)), train)
    else:
        n_train = min(MAX_TRAIN, len(y) // 2)
        rest, train = train_test_split(np.arange(len(y)), test_size=n_train, stratify=y, random_state=seed)
    if len(rest) > MAX_TEST:
        rest, _ = train_test_split(rest, train_size=MAX_TEST, stratify=y[rest], random_state=seed)
    return X[train], y[train], X[rest], y[rest]


class RandomizedDraws:
    """RandomizedSearchCV's expected accuracy on a dataset: the mean test
    score of RANDOM_DRAWS searches with different random states (one draw of 8
    configurations is a lottery: on a single dataset it can be 20 points from
    another draw's result)."""

    def __init__(self, estimator, grid, random_state, **params):
        self.searches = [RandomizedSearchCV(estimator, grid, random_state=RANDOM_DRAWS * random_state + i, **params)
                         for i in range(RANDOM_DRAWS)]

    def fit(self, X, y):
        for search in self.searches:
            search.fit(X, y)
        return self

    def score(self, X, y):
        return float(np.mean([search.score(X, y) for search in self.searches]))


class TrainingParts:
    """``meta_cv`` of the benchmark: splits of a whole meta-training dataset
    shaped like the setting's (training part, test part), drawn as ``split``
    draws the test datasets' one, with seeds of their own."""

    def __init__(self, setting, n_splits=META_SPLITS):
        self.setting, self.n_splits = setting, n_splits

    def split(self, X, y, groups=None):
        index = np.arange(len(y))
        for seed in range(self.n_splits):
            parts = split(index, np.asarray(y), self.setting, seed=1000 + seed)
            yield parts[0], parts[2]

    def get_n_splits(self, X=None, y=None, groups=None):
        return self.n_splits


def run(names, data, log, cache, estimators):
    """{(estimator, setting, method): {dataset: accuracy}}, CPU seconds per
    (estimator, setting, method), and the portfolio regret per (estimator, setting)."""
    acc, cpu, regret = {}, {}, {}
    rotation = folds(names, N_FOLDS)
    for setting_name, setting in SETTINGS.items():
        parts = {name: split(*data[name], setting, seed=i) for i, name in enumerate(names)}
        for est_name in estimators:
            estimator, grid = ESTIMATORS[est_name]
            key = (est_name, setting_name)
            # Two caches: the pool on the whole datasets' setting-shaped splits
            # (meta_cv), and on their training parts with the searches' own cv.
            search = MetaSearchCV(estimator, grid, n_candidates=N_CANDIDATES, cv=CV, meta_cv=TrainingParts(setting),
                                  memory=Memory(Path(cache) / f"{est_name}-{setting}-whole", verbose=0), n_jobs=1)
            on_parts = clone(search).set_params(
                meta_cv=None, memory=Memory(Path(cache) / f"{est_name}-{setting}-parts", verbose=0))

            def timed(method, fit):
                start = time.process_time()
                score = fit()
                cpu[(*key, method)] = cpu.get((*key, method), 0.0) + time.process_time() - start
                return score

            for test_names in rotation:
                meta = timed("meta_fit", lambda: clone(search).meta_fit(
                    {n: data[n] for n in names if n not in test_names}))
                meta_parts = timed("meta_fit", lambda: clone(on_parts).meta_fit(
                    {n: parts[n][:2] for n in names if n not in test_names}))
                regret.setdefault(key, []).append(meta.meta_regret_[-1])
                for name in test_names:
                    X_train, y_train, X_test, y_test = parts[name]
                    seed = names.index(name)
                    fits = {
                        "defaults": lambda: clone(estimator),
                        "RandomizedSearchCV (8)": lambda: RandomizedDraws(
                            estimator, grid, n_iter=N_CANDIDATES, cv=CV, random_state=seed),
                        "MetaSearchCV (8)": lambda: clone(meta),
                        "MetaSearchCV (8), selection='cv'": lambda: clone(meta).set_params(selection="cv"),
                        f"MetaSearchCV (8), {N_NEIGHBORS} nearest": lambda: clone(meta).set_params(
                            n_neighbors=N_NEIGHBORS),
                        "MetaSearchCV (8), meta-fit on training parts": lambda: clone(meta_parts),
                    }
                    for method, make in fits.items():
                        acc.setdefault((*key, method), {})[name] = timed(
                            method, lambda: make().fit(X_train, y_train).score(X_test, y_test))
            # The ceiling: a grid search over the whole pool on each dataset's
            # training part. Its cross-validation is exactly the training-part
            # meta_fit's evaluation of that dataset (same splits, same scorer),
            # cached above, so it is read back; the first dataset checks that a
            # real GridSearchCV picks the same configuration.
            full = timed("meta_fit", lambda: clone(on_parts).meta_fit({n: parts[n][:2] for n in names}))
            for row, name in enumerate(names):
                X_train, y_train, X_test, y_test = parts[name]
                best = full.meta_pool_[int(np.argmax(full.meta_scores_[row]))]
                if row == 0:
                    check = GridSearchCV(estimator, grid, cv=CV).fit(X_train, y_train)
                    assert check.best_params_ == best, (check.best_params_, best)
                acc.setdefault((*key, METHODS[-1]), {})[name] = timed(
                    METHODS[-1], lambda: clone(estimator).set_params(**best).fit(X_train, y_train).score(X_test, y_test))
            cpu[(*key, METHODS[1])] /= RANDOM_DRAWS  # one search's time, as the other columns
            means = {m: 100 * np.mean(list(acc[(*key, m)].values())) for m in METHODS}
            log(f"{est_name}, {setting_name}: " + ", ".join(f"{m} {v:.2f}" for m, v in means.items()))
    return acc, cpu, regret


def paired(acc, key, a, b):
    """Mean and 95% half-width (t, across datasets) of a - b, in points."""
    d = 100 * np.array([acc[(*key, a)][n] - acc[(*key, b)][n] for n in acc[(*key, a)]])
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) if np.ptp(d) > 0 else 0.0
    return d.mean(), half


def report(commands, names, acc, cpu, regret, seconds, cpu_seconds):
    meta, ceiling = "MetaSearchCV (8)", METHODS[-1]
    lines = [
        "# Learned hyper-parameters: MetaSearchCV on unseen datasets",
        "",
        "Command" + ("s (side by side, one per core, then the report):" if len(commands) > 1 else ":"),
        "",
        "```",
        *commands,
        "```",
        "",
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}); "
        f"scikit-learn {sklearn.__version__}, 1 thread per process, `n_jobs=1`, no GPU. "
        f"Date: {time.strftime('%Y-%m-%d')}. Whole run: {cpu_seconds / 60:.1f} minutes of CPU, "
        f"{seconds / 60:.1f} minutes of wall-clock time.",
        "",
        f"Protocol: the {len(names)} datasets of the tabular collection (nominal features one-hot "
        f"encoded), {N_FOLDS}-fold leave-datasets-out rotation as in [tabular.md](tabular.md): "
        "each dataset is tested once, by a search meta-fitted on the datasets of the other folds. "
        f"Each dataset is split once (stratified, seeded by its index) into a training part, "
        f"up to {MAX_TRAIN} rows or {FEW_SHOT} rows per class, and a test part of up to {MAX_TEST} "
        f"other rows. Every method fits on the training part ({CV}-fold cross-validation inside "
        "the searches, accuracy) and is scored on the test part. Meta-training sees the other "
        f"datasets whole and evaluates the pool on {META_SPLITS} splits of each shaped like the "
        "setting (`meta_cv`: a training part of that size and up to "
        f"{MAX_TEST} other rows to test on, drawn like the test datasets' split with other seeds), so "
        "that experience measures how a configuration generalises from a training set of that size.",
        "",
        "Methods, each a 'fit' on the new dataset's training part:",
        "",
        "- (a) defaults: the estimator as below, scikit-learn's defaults for the searched parameters;",
        f"- (b) `RandomizedSearchCV(n_iter={N_CANDIDATES})` over the pool's grid: "
        f"{N_CANDIDATES} x {CV} fits and a refit, like MetaSearchCV; its accuracy on a dataset is "
        f"the mean over {RANDOM_DRAWS} random states (its expected accuracy: one draw is a lottery), "
        "its CPU time that of one search;",
        f"- `MetaSearchCV(n_candidates={N_CANDIDATES})`: the greedy portfolio of the meta-training "
        "datasets, the winner chosen by its posterior score (`selection='posterior'`, the default: "
        "the new dataset's cross-validation shrunk towards the meta-training scores); "
        "`selection='cv'`: the winner by cross-validation alone, as a grid search would choose; "
        f"`n_neighbors={N_NEIGHBORS}`: the portfolio of the {N_NEIGHBORS} nearest meta-training "
        "datasets in meta-feature space; 'meta-fit on training parts': meta-fitted on the other "
        f"datasets' training parts only, with the searches' {CV}-fold cross-validation (no `meta_cv`), "
        "what a user whose earlier datasets are all small would have;",
        "- (c) the ceiling: a grid search over the whole pool. Its cross-validation is the one "
        "the training-part meta_fit ran on that dataset (same splits, same scorer; read from the "
        "cache); the run checks on the first dataset of each table row that `GridSearchCV` picks "
        "the same configuration.",
        "",
        "Estimators and pools (every pool holds the default configuration):",
        "",
    ]
    for est_name, (estimator, grid) in ESTIMATORS.items():
        size = int(np.prod([len(v) for v in grid.values()]))
        lines.append(f"- {est_name}: `{estimator}`, {size} configurations: `{grid}`")
    lines += [
        "",
        "Mean test accuracy (%) over the datasets:",
        "",
        "| estimator | training set | " + " | ".join(METHODS) + " |",
        "| --- | --- |" + " --- |" * len(METHODS),
    ]
    keys = [(e, s) for s in SETTINGS for e in ESTIMATORS]
    for key in keys:
        cells = [f"{100 * np.mean(list(acc[(*key, m)].values())):.2f}" for m in METHODS]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    others = [m for m in METHODS if m != meta]
    lines += [
        "",
        "MetaSearchCV (8 candidates, all meta-training datasets, posterior selection) minus each "
        "other method, paired over datasets, in points with a 95% confidence interval (t over "
        "datasets). Targets: within 1 point of the ceiling, ahead of (a) and (b):",
        "",
        "| estimator | training set | " + " | ".join(f"- {m}" for m in others)
        + " | targets | portfolio regret on meta-training datasets (points) |",
        "| --- | --- |" + " --- |" * (len(others) + 2),
    ]
    for key in keys:
        diffs = {m: paired(acc, key, meta, m) for m in METHODS if m != meta}
        vs_default, vs_random = diffs["defaults"][0], diffs["RandomizedSearchCV (8)"][0]
        vs_ceiling = diffs[ceiling][0]
        verdict = []
        verdict.append("ceiling: met" if vs_ceiling >= -1 else f"ceiling: missed by {-1 - vs_ceiling:.2f}")
        verdict.append("(a): met" if vs_default > 0 else f"(a): missed by {-vs_default:.2f}")
        verdict.append("(b): met" if vs_random > 0 else f"(b): missed by {-vs_random:.2f}")
        cells = [f"{d:+.2f} +- {h:.2f}" for d, h in (diffs[m] for m in others)]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + f" | {'; '.join(verdict)} | "
                     f"{100 * np.mean(regret[key]):.2f} |")
    lines += [
        "",
        "CPU seconds per table row, summed over datasets (meta_fit includes the cached pool "
        "evaluations of all folds and the ceiling's):",
        "",
        "| estimator | training set | meta_fit | " + " | ".join(METHODS) + " |",
        "| --- | --- | --- |" + " --- |" * len(METHODS),
    ]
    for key in keys:
        lines.append(f"| {key[0]} | {key[1]} | {cpu[(*key, 'meta_fit')]:.0f} | "
                     + " | ".join(f"{cpu[(*key, m)]:.0f}" for m in METHODS) + " |")
    lines += ["", "Per dataset, test accuracy (%) of MetaSearchCV (8) / ceiling:", "",
              "| dataset | " + " | ".join(f"{e}, {s}" for e, s in keys) + " |",
              "| --- |" + " --- |" * len(keys)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(
            f"{100 * acc[(*k, meta)][name]:.1f} / {100 * acc[(*k, ceiling)][name]:.1f}" for k in keys) + " |")
    return lines


def save(path, names, acc, cpu, regret, seconds, cpu_seconds):
    """The raw results of one process, for --merge."""
    flat = lambda table: [[*key, value] for key, value in table.items()]  # noqa: E731
    Path(path).write_text(json.dumps({
        "command": shlex.join(["python", "benchmarks/bench_meta_search.py", *sys.argv[1:]]),
        "names": names, "acc": flat(acc), "cpu": flat(cpu), "regret": flat(regret),
        "seconds": seconds, "cpu_seconds": cpu_seconds,
    }))


def load(paths):
    """Results of several processes as one, for the report."""
    acc, cpu, regret, commands, seconds, cpu_seconds, names = {}, {}, {}, [], 0.0, 0.0, None
    for path in paths:
        part = json.loads(Path(path).read_text())
        if names is not None and part["names"] != names:
            raise ValueError(f"{path} ran other datasets than the first file")
        names = part["names"]
        for table, rows in ((acc, part["acc"]), (cpu, part["cpu"]), (regret, part["regret"])):
            table.update({tuple(row[:-1]): row[-1] for row in rows})
        commands.append(part["command"])
        seconds, cpu_seconds = max(seconds, part["seconds"]), cpu_seconds + part["cpu_seconds"]
    missing = [e for e in ESTIMATORS for s in SETTINGS if (e, s) not in regret]
    if missing:
        raise ValueError(f"no results for {sorted(set(missing))}; run those estimators too")
    return names, acc, cpu, regret, commands, seconds, cpu_seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=str(ROOT.parent / "shared" / "data"),
                        help="folder holding tabular/ (the shared KEEL/UCI collection)")
    parser.add_argument("--quick", action="store_true", help="10 datasets, output printed only")
    parser.add_argument("--estimator", action="append", choices=list(ESTIMATORS),
                        help="run only this estimator (repeatable); with --json, for --merge")
    parser.add_argument("--json", help="save the raw results here instead of writing the page")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="write the page from saved results")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks" / "meta_search.md"))
    args = parser.parse_args(argv)
    if args.merge:
        names, acc, cpu, regret, commands, seconds, cpu_seconds = load(args.merge)
        commands = [*commands, shlex.join(["python", "benchmarks/bench_meta_search.py", *sys.argv[1:]])]
        Path(args.output).write_text("\n".join(report(commands, names, acc, cpu, regret, seconds, cpu_seconds)) + "\n")
        print(f"wrote {args.output}")
        return
    estimators = args.estimator or list(ESTIMATORS)
    if set(estimators) != set(ESTIMATORS) and not args.json:
        parser.error("--estimator runs part of the benchmark: save it with --json and write the page with --merge")
    start, cpu_start = time.perf_counter(), time.process_time()
    names = sorted(list_tabular_datasets(data_home=args.data_home)["name"])
    if args.quick:
        names = names[:10]
    data = {name: encoded(name, args.data_home) for name in names}

    def log(line):
        print(f"[{time.perf_counter() - start:6.0f} s] {line}", flush=True)

    with threadpool_limits(1), tempfile.TemporaryDirectory() as cache:
        acc, cpu, regret = run(names, data, log, cache, estimators)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    if args.json:
        save(args.json, names, acc, cpu, regret, seconds, cpu_seconds)
        log(f"wrote {args.json}")
        return
    commands = [shlex.join(["python", "benchmarks/bench_meta_search.py", *sys.argv[1:]])]
    text = "\n".join(report(commands, names, acc, cpu, regret, seconds, cpu_seconds)) + "\n"
    if args.quick:
        print(text)
    else:
        Path(args.output).write_text(text)
        log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
