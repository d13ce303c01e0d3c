"""Every image learner on Omniglot against minutes of CPU meta-training.

Each learner is meta-trained with its recipe (``skmeta/_recipes.py``, the
one ``skmeta --budget`` uses: episode shape, learning rate, warm-up then
cosine annealing over the budget with ``BudgetSchedule``) for each budget,
then tested on the held-out alphabets of the command line's split
(``OMNIGLOT_TEST_ALPHABETS``): 5-way 1-shot and 20-way 1-shot episodes over
both alphabets, and 20-way 1-shot *within-alphabet* episodes (all 20
classes from Japanese_(katakana), the only held-out alphabet with 20
characters), Lake et al.'s harder setting. MANN is also tested on
Santoro et al.'s sequence protocol (accuracy at the 2nd and 10th instance).

Each (learner, budget) runs in a process of its own, pinned to its own
cores (``--workers N --cores-per-worker C``), so a many-core machine runs N
at a time without them slowing each other. Raw results accumulate in a
JSON file (a rerun of a run replaces it); the page and the plot are
regenerated from all of it at the end, or alone with ``--report-only``.

    python benchmarks/bench_omniglot_budget.py --workers 8 --cores-per-worker 2   # the full grid
    python benchmarks/bench_omniglot_budget.py --learners protonet --budgets 2 --set train_way=5
    python benchmarks/bench_omniglot_budget.py --report-only
    python benchmarks/bench_omniglot_budget.py --quick   # smoke run: seconds per learner, prints only

``--set KEY=VALUE`` changes the recipe of the runs (an estimator argument
such as ``lr=3e-3``, or ``train_way``, ``train_shot``, ``n_query``,
``warmup``, ``final_factor``); such runs are listed under "what was tried",
beside the recipe's run at the same budget, and never in the main table.
"""

import argparse
import ast
import datetime
import importlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The checkout this script is in is what it measures, whatever skmeta is installed.
sys.path.insert(0, str(ROOT))
LEARNERS = ["protonet", "matching", "siamese", "relation", "pretrained", "maml", "metasgd", "anil", "reptile",
            "mann", "metalstm"]
NAMES = {
    "protonet": "ProtoNet", "matching": "Matching Networks", "siamese": "Siamese networks",
    "relation": "Relation Networks", "pretrained": "Pre-train + nearest centroid", "maml": "MAML",
    "metasgd": "Meta-SGD", "anil": "ANIL", "reptile": "Reptile", "mann": "MANN", "metalstm": "Meta-LSTM",
}
SCHEDULE_KEYS = ("train_way", "train_shot", "n_query", "warmup", "final_factor", "affine")
WITHIN_ALPHABET = "Japanese_(katakana)"


# ----------------------------------------------------------------------
# one run, in its own process


def _machine(cores):
    import torch

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cores_on_machine": os.cpu_count(), "cores_used": len(cores),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "python": platform.python_version()}


def _accuracy(learner, X, y, n_way, n_query, n_episodes, seed):
    from skmeta.model_selection import EpisodicSplit, mean_confidence_interval

    cv = EpisodicSplit(n_way=n_way, k_shot=1, n_query=n_query, n_episodes=n_episodes, random_state=seed)
    scores = [learner.fit(X[s], y[s]).score(X[q], y[q]) for s, q in cv.split(X, y)]
    mean, half = mean_confidence_interval(scores)
    return {"mean": 100 * float(mean), "ci": 100 * float(half), "episodes": n_episodes}


def _instance_accuracy(learner, X, y, n_episodes, seed):
    """Santoro et al.'s protocol: 5 new classes x 10 instances in random
    order, each predicted before its label is shown."""
    import numpy as np

    from skmeta import EpisodeSampler
    from skmeta.model_selection import mean_confidence_interval

    rng = np.random.RandomState(seed)
    sampler = EpisodeSampler(X, y, n_way=5, k_shot=10, n_query=1, n_tasks=n_episodes, random_state=seed)
    scores = np.zeros((n_episodes, 10))
    for i, task in enumerate(sampler):
        order = rng.permutation(50)
        Xs, ys = task.X_support.numpy()[order], task.y_support.numpy()[order]
        correct = learner.predict_proba_sequence(Xs, ys).argmax(1) == ys
        instance = np.zeros(50, dtype=int)
        for label in range(5):
            instance[ys == label] = np.arange(10)
        scores[i] = np.bincount(instance, weights=correct, minlength=10) / 5
    return {str(k + 1): [100 * float(v) for v in mean_confidence_interval(scores[:, k])] for k in (0, 1, 9)}


def run_one(learner_name, minutes, overrides, args):
    """Meta-train one learner for ``minutes`` and test it; a dict of results."""
    import numpy as np
    import torch

    from skmeta import EpisodeSampler
    from skmeta._recipes import budget_learner
    from skmeta.cli import _bf16_is_fast
    from skmeta.datasets import OMNIGLOT_TEST_ALPHABETS, load_omniglot
    from skmeta.modules import Conv4
    from skmeta.optimization._base import OptimizationMetaLearner
    from skmeta.tasks import random_affine, rotate_classes

    cores = sorted(os.sched_getaffinity(0))
    torch.set_num_threads(args.cores_per_worker)
    precision = args.precision
    if precision == "auto":
        precision = "bfloat16" if _bf16_is_fast() else "float32"
    data = load_omniglot(args.omniglot)
    test = np.isin(data.alphabet, OMNIGLOT_TEST_ALPHABETS)
    train, X_test, y_test = (data.data[~test], data.target[~test]), data.data[test], data.target[test]
    within = data.alphabet[test] == WITHIN_ALPHABET

    schedule = {key: overrides[key] for key in SCHEDULE_KEYS if key in overrides}
    params = {key: _resolve(value) for key, value in overrides.items() if key not in SCHEDULE_KEYS}
    learner, episode = budget_learner(learner_name, 60 * minutes, module=Conv4, n_way=5, k_shot=1, n_query=15,
                                      precision=precision, verbose=0, random_state=args.seed, **params)
    budget = dict(learner.callbacks)["budget"]
    for key in ("warmup", "final_factor"):
        if key in schedule:
            setattr(budget, key, schedule.pop(key))
    if "affine" in schedule:
        episode["transform"] = random_affine() if schedule.pop("affine") else None
    episode.update({key.replace("train_way", "n_way").replace("train_shot", "k_shot"): int(value)
                    for key, value in schedule.items()})
    if isinstance(learner, OptimizationMetaLearner) and episode["n_way"] < 20:
        # A head sized for the 20-way tests: with the zeroing trick every
        # adaptation starts from zero weights, so outputs never trained on
        # start as the trained ones do.
        learner.set_params(module__out_features=20)
    tasks = EpisodeSampler(*train, **episode, n_tasks=100, augment=rotate_classes(), random_state=args.seed)
    start = time.perf_counter()
    learner.meta_fit(tasks)
    wall = time.perf_counter() - start
    updates = sum(len(epoch["batches"]) for epoch in learner.history)

    start = time.perf_counter()
    result = {
        "learner": learner_name, "minutes": minutes, "overrides": overrides, "seed": args.seed,
        "precision": precision, "estimator": type(learner).__name__,
        # The transform is a function: the overrides name it (affine=True).
        "training_episode": {key: value for key, value in episode.items() if key != "transform"},
        "seconds_trained": round(budget.elapsed_, 1), "seconds_meta_fit": round(wall, 1),
        "meta_updates": updates, "tasks_seen": updates * (1 if learner_name == "pretrained" else learner.batch_size),
        "five_way": _accuracy(learner, X_test, y_test, 5, 15, args.episodes, args.seed),
    }
    if learner_name == "mann":
        # Its network has one label slot per class of Santoro et al.'s
        # 5-class episodes: 20-way tasks do not fit it.
        result["instances"] = _instance_accuracy(learner, X_test, y_test, args.episodes, args.seed)
    else:
        result["twenty_way"] = _accuracy(learner, X_test, y_test, 20, 5, args.episodes, args.seed)
        result["twenty_way_within"] = _accuracy(learner, X_test[within], y_test[within], 20, 1, args.episodes,
                                                args.seed)
    result["seconds_testing"] = round(time.perf_counter() - start, 1)
    result["machine"] = _machine(cores)
    result["date"] = datetime.date.today().isoformat()
    return result


# ----------------------------------------------------------------------
# the grid: N worker processes, each pinned to its own cores


def _setup(result):
    """The machine and cores a run had: runs are compared only within one."""
    machine = result["machine"]
    return (machine["cpu"], machine["cores_on_machine"], machine["cores_used"], result["precision"])


def _key(result):
    return (result["learner"], float(result["minutes"]), json.dumps(result["overrides"], sort_keys=True),
            result["seed"], *map(str, _setup(result)))


def _is_recipe_run(result):
    """A run of the recipe as it is, with the default seed: the main table's
    kind. Other seeds measure the spread of a recipe, under "what was tried"."""
    return not result["overrides"] and result["seed"] == 0


def _main_setup(results):
    """The setup with the most recipe runs: the one the page's tables show."""
    counts = {}
    for r in results:
        if _is_recipe_run(r):
            counts[_setup(r)] = counts.get(_setup(r), 0) + 1
    return max(counts, key=lambda setup: (counts[setup], setup[2])) if counts else None


def load_results(path):
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else []


def merge(path, new):
    """Add ``new`` to the results in ``path``, replacing a run of the same
    learner, budget, overrides and seed; written atomically."""
    results = {_key(r): r for r in load_results(path)}
    results[_key(new)] = new
    path = Path(path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(sorted(results.values(), key=_key), indent=1) + "\n")
    os.replace(tmp, path)


def _child_command(learner, minutes, args, cores):
    command = [sys.executable, str(Path(__file__).resolve()), "--run-one", learner, str(minutes),
               "--cores", ",".join(map(str, cores)), "--cores-per-worker", str(args.cores_per_worker),
               "--episodes", str(args.episodes), "--omniglot", args.omniglot, "--precision", args.precision,
               "--seed", str(args.seed)]
    for item in args.set:
        command += ["--set", item]
    return command


def run_grid(args, command_line):
    available = sorted(os.sched_getaffinity(0))
    needed = args.workers * args.cores_per_worker
    if needed > len(available):
        raise SystemExit(f"--workers {args.workers} x --cores-per-worker {args.cores_per_worker} needs {needed} "
                         f"cores; this process may use {len(available)} ({available})")
    slots = [available[i * args.cores_per_worker:(i + 1) * args.cores_per_worker] for i in range(args.workers)]
    free = list(range(args.workers))
    # Longest first: the grid ends sooner when the long runs start early.
    jobs = sorted(((learner, minutes) for learner in args.learners for minutes in args.budgets),
                  key=lambda job: -job[1])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.cores_per_worker),
           "MKL_NUM_THREADS": str(args.cores_per_worker), "PYTHONUNBUFFERED": "1"}

    import threading

    lock = threading.Lock()

    def work(job):
        learner, minutes = job
        with lock:
            slot = free.pop()
        try:
            command = _child_command(learner, minutes, args, slots[slot])
            print(f"start {learner} {minutes:g} min on cores {slots[slot]}", flush=True)
            done = subprocess.run(command, env=env, capture_output=True, text=True)
        finally:
            with lock:
                free.append(slot)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            print(f"FAILED {learner} {minutes:g} min: " + " | ".join(tail), flush=True)
            return None
        result = json.loads(lines[-1])
        result["command"] = command_line
        if args.note:
            result["note"] = args.note
        print(f"done {learner} {minutes:g} min: 5-way 1-shot {_fmt(result['five_way'])} %, 20-way "
              f"within-alphabet {_fmt(result.get('twenty_way_within'))} %, {result['meta_updates']} "
              f"meta-updates in {result['seconds_trained']:.0f} s", flush=True)
        if args.results:
            with lock:
                merge(args.results, result)
        return result

    with ThreadPoolExecutor(args.workers) as pool:
        return [r for r in pool.map(work, jobs) if r is not None]


# ----------------------------------------------------------------------
# the page


def _fmt(acc):
    return "n/a" if acc is None else f"{acc['mean']:.2f} +- {acc['ci']:.2f}"


def _machine_line(results):
    machines = sorted({(r["machine"]["cpu"], r["machine"]["cores_on_machine"], r["machine"]["cores_used"],
                        r["machine"]["torch"], r["precision"]) for r in results})
    return "; ".join(f"{cpu} ({total} cores), {used} core(s) and {used} torch thread(s) per run, torch {torch}, "
                     f"{precision}" for cpu, total, used, torch, precision in machines)


def targets(main):
    """One line per target of the issue: met or not, and by how much."""
    def best(learner, key, max_minutes, sub=None):
        runs = [r for r in main if r["learner"] == learner and r["minutes"] <= max_minutes and key in r]
        if not runs:
            return None, None
        run = max(runs, key=lambda r: (r[key][sub][0] if sub else r[key]["mean"]))
        return (run[key][sub][0] if sub else run[key]["mean"]), run["minutes"]

    largest = max((r["minutes"] for r in main), default=0)

    def line(what, value, minutes, goal, budget):
        if value is None:
            return f"- {what}: not measured (no run within the budget)."
        verdict = "met" if value >= goal else f"missed by {goal - value:.2f} points"
        if largest < budget:
            verdict += f" (no run at the target's {budget:g} minutes yet: the largest budget here is {largest:g})"
        return f"- {what}: {value:.2f} % (best run, {minutes:g} min), {verdict}."

    lines = [line("ProtoNet 5-way 1-shot >= 97 % within 10 min", *best("protonet", "five_way", 10), 97, 10),
             line("ProtoNet 20-way 1-shot >= 90 % within 10 min", *best("protonet", "twenty_way", 10), 90, 10)]
    for learner in ("maml", "metasgd"):
        lines.append(line(f"{NAMES[learner]} 5-way 1-shot >= 95 % within 15 min", *best(learner, "five_way", 15),
                          95, 15))
    proto = next((r for r in main if r["learner"] == "protonet" and r["minutes"] == 10), None)
    for learner in ("matching", "siamese", "relation"):
        run = next((r for r in main if r["learner"] == learner and r["minutes"] == 10), None)
        if proto is None or run is None:
            lines.append(f"- {NAMES[learner]} within 2 points of ProtoNet at 10 min: not measured (no 10-minute runs).")
            continue
        gap = proto["five_way"]["mean"] - run["five_way"]["mean"]
        verdict = "met" if gap <= 2 else f"missed by {gap - 2:.2f} points"
        lines.append(f"- {NAMES[learner]} within 2 points of ProtoNet at 10 min: {run['five_way']['mean']:.2f} % "
                     f"against {proto['five_way']['mean']:.2f} % ({gap:.2f} points behind), {verdict}.")
    for instance, goal in (("2", 80), ("10", 90)):
        lines.append(line(f"MANN {instance}{'nd' if instance == '2' else 'th'} instance >= {goal} % within 20 min",
                          *best("mann", "instances", 20, instance), goal, 20))
    within = [r for r in main if "twenty_way_within" in r]
    if within:
        run = max(within, key=lambda r: r["twenty_way_within"]["mean"])
        error = 100 - run["twenty_way_within"]["mean"]
        verdict = "met" if error <= 4.5 else f"missed by {error - 4.5:.2f} points"
        lines.append(f"- 20-way 1-shot within-alphabet error <= 4.5 % for the best learner: {error:.2f} % "
                     f"({NAMES[run['learner']]}, {run['minutes']:g} min), {verdict}.")
    lines.append("- Sinusoid targets (MAML, Meta-SGD): not on this page; see sinusoid.md.")
    return lines


def _change_text(run):
    changes = [f"{key}={value!r}" for key, value in sorted(run["overrides"].items())]
    if run["seed"] != 0:
        changes.append(f"seed={run['seed']} (the recipe again)" if not changes else f"seed={run['seed']}")
    return ", ".join(changes)


def render(results, plot_name):
    setup = _main_setup(results)
    main = [r for r in results if _is_recipe_run(r) and _setup(r) == setup]
    tried = [r for r in results if not _is_recipe_run(r)]
    recipe_runs = {(r["learner"], r["minutes"], _setup(r)): r for r in results if _is_recipe_run(r)}
    budgets = sorted({r["minutes"] for r in main})
    learners = [name for name in LEARNERS if any(r["learner"] == name for r in main)]
    by = {(r["learner"], r["minutes"]): r for r in main}
    commands = sorted({r.get("command", "") for r in main if r.get("command")})
    dates = sorted({r["date"] for r in results})
    notes = sorted({r["note"] for r in results if r.get("note") and _setup(r) == setup})
    out = [
        "# Every image learner on Omniglot against minutes of CPU meta-training",
        "",
        "Meta-train on six alphabets of the two minimal background sets (characters and their",
        "rotations as classes), test on Japanese_(katakana) and Tagalog, never seen in",
        "meta-training: the split of `skmeta --omniglot`. Each learner is meta-trained with its",
        "recipe from `skmeta/_recipes.py` (what `skmeta --omniglot PATH --learner NAME --budget",
        "MINUTES` runs): Conv-4, Adam, the learning rate warmed up over the first 5 % of the",
        "budget then cosine-annealed to 1 % of it at the end (`skmeta.callbacks.BudgetSchedule`),",
        "which also stops meta-training when the budget is spent. Test: 5-way 1-shot (15 queries",
        "per class) and 20-way 1-shot (5 queries) episodes over both held-out alphabets, and",
        "20-way 1-shot within-alphabet episodes (1 query per class; all 20 classes from",
        "Japanese_(katakana), the only held-out alphabet with 20 characters: Lake et al.'s",
        "harder setting). Mean accuracy +- 95% confidence interval; the same episodes for every",
        "learner.",
        "",
        "Command" + ("s" if len(commands) > 1 else "") + " (each run in its own process, pinned to its own cores;",
        "runs of the recipes on other machines or cores are listed at the end):",
        "",
        "```",
        *commands,
        "```",
        "",
        f"Machine: {_machine_line(main)}. Date: {', '.join(dates)}.",
        *[f"Note: {note.rstrip('.')}." for note in notes],
        "",
        f"![5-way 1-shot accuracy against minutes of meta-training]({plot_name})",
        "",
        "## 5-way 1-shot accuracy (%) by minutes of meta-training",
        "",
        "| learner | " + " | ".join(f"{m:g} min" for m in budgets) + " |",
        "| --- | " + " | ".join("---" for _ in budgets) + " |",
    ]
    for learner in learners:
        cells = [_fmt(by[learner, m]["five_way"]) if (learner, m) in by else "" for m in budgets]
        out.append(f"| {NAMES[learner]} | " + " | ".join(cells) + " |")
    out += [
        "",
        "## 20-way 1-shot accuracy (%) at each learner's largest budget",
        "",
        "| learner | minutes | 20-way 1-shot, both alphabets | 20-way 1-shot, within one alphabet |",
        "| --- | --- | --- | --- |",
    ]
    for learner in learners:
        run = by[learner, max(m for (name, m) in by if name == learner)]
        out.append(f"| {NAMES[learner]} | {run['minutes']:g} | {_fmt(run.get('twenty_way'))} | "
                   f"{_fmt(run.get('twenty_way_within'))} |")
    mann = [r for r in main if r["learner"] == "mann" and "instances" in r]
    if mann:
        out += ["", "## MANN on Santoro et al.'s protocol (accuracy % at the k-th instance of a class)", "",
                "| minutes | 1st | 2nd | 10th |", "| --- | --- | --- | --- |"]
        for run in sorted(mann, key=lambda r: r["minutes"]):
            cells = [f"{run['instances'][k][0]:.1f} +- {run['instances'][k][1]:.1f}" for k in ("1", "2", "10")]
            out.append(f"| {run['minutes']:g} | " + " | ".join(cells) + " |")
    out += ["", "## Meta-training done (meta-updates / seconds actually trained)", "",
            "| learner | training episodes | " + " | ".join(f"{m:g} min" for m in budgets) + " |",
            "| --- | --- | " + " | ".join("---" for _ in budgets) + " |"]
    for learner in learners:
        some = next(r for r in main if r["learner"] == learner)
        shape = "{n_way}-way {k_shot}-shot {n_query}-query".format(**some["training_episode"])
        if learner == "pretrained":
            shape = "mini-batches of 64 images"
        cells = [f"{by[learner, m]['meta_updates']} / {by[learner, m]['seconds_trained']:.0f} s"
                 if (learner, m) in by else "" for m in budgets]
        out.append(f"| {NAMES[learner]} | {shape} | " + " | ".join(cells) + " |")
    out += ["", "## Targets of the issue", "",
            "Targets were set for 2 cores (bfloat16 where the CPU has it); the machine line above says",
            "what these runs had.", "", *targets(main)]
    out += ["", "## What was tried", "",
            "Runs with the recipe changed (`--set KEY=VALUE`), beside the recipe's own run of the same",
            "learner and budget on the same machine and cores. Only changes that helped went into the",
            "recipes. A budget is wall-clock time: on a machine shared with other jobs the same run",
            "gets more or fewer meta-updates (the last column, the recipe's run in brackets), and a",
            "repeat with another seed shows how far two runs of one recipe differ.", "",
            "| learner | minutes | cores | change | 5-way 1-shot (%) | recipe's run (%) | 20-way within (%) | "
            "meta-updates (recipe's) | command |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in sorted(tried, key=lambda r: (r["learner"], r["minutes"], _change_text(r))):
        base = recipe_runs.get((run["learner"], run["minutes"], _setup(run)))
        base_updates = f" ({base['meta_updates']})" if base else ""
        out.append(f"| {NAMES[run['learner']]} | {run['minutes']:g} | {run['machine']['cores_used']} | "
                   f"{_change_text(run)} | "
                   f"{_fmt(run['five_way'])} | {_fmt(base['five_way']) if base else ''} | "
                   f"{_fmt(run.get('twenty_way_within'))} | {run['meta_updates']}{base_updates} | "
                   f"`{run.get('command', '')}` |")
    others = sorted((r for r in results if _is_recipe_run(r) and _setup(r) != setup), key=_key)
    if others:
        out += ["", "## Recipe runs on other machines or cores", "",
                "Not in the tables or the targets above, which compare runs of one machine and core count.", "",
                "| learner | minutes | machine | 5-way 1-shot (%) | 20-way within (%) | meta-updates | command | note |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for run in others:
            out.append(f"| {NAMES[run['learner']]} | {run['minutes']:g} | {_machine_line([run])} | "
                       f"{_fmt(run['five_way'])} | {_fmt(run.get('twenty_way_within'))} | {run['meta_updates']} | "
                       f"`{run.get('command', '')}` | {run.get('note', '')} |")
    return "\n".join(out) + "\n"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setup = _main_setup(results)
    main = [r for r in results if _is_recipe_run(r) and _setup(r) == setup]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for learner in LEARNERS:
        runs = sorted((r for r in main if r["learner"] == learner), key=lambda r: r["minutes"])
        if not runs:
            continue
        minutes = [r["minutes"] for r in runs]
        mean = [r["five_way"]["mean"] for r in runs]
        half = [r["five_way"]["ci"] for r in runs]
        line, = ax.plot(minutes, mean, marker="o", label=NAMES[learner])
        ax.fill_between(minutes, [m - h for m, h in zip(mean, half)], [m + h for m, h in zip(mean, half)],
                        color=line.get_color(), alpha=0.2)
    ax.set_xticks(sorted({r["minutes"] for r in main}))
    ax.set_xlabel("minutes of CPU meta-training")
    ax.set_ylabel("5-way 1-shot accuracy (%), 95% CI")
    ax.set_title("Omniglot, held-out alphabets")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------


def _resolve(value):
    """A class named by its dotted path (``criterion=torch.nn.CrossEntropyLoss``),
    or the value itself: overrides stay strings in the results file."""
    if isinstance(value, str) and value.startswith(("torch.", "skmeta.")) and "." in value:
        module, _, name = value.rpartition(".")
        return getattr(importlib.import_module(module), name)
    return value


def _override(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes KEY=VALUE, got {text!r}")
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass  # a plain string, e.g. distance=cosine
    return key, value


def _command_line(argv):
    """The command as the page shows it: no path of this machine."""
    kept, skip = [], False
    for arg in argv:
        if skip or arg.startswith(("--omniglot=", "--results=", "--output=", "--note=")):
            skip = False
            continue
        if arg in ("--omniglot", "--results", "--output", "--note"):
            skip = True
            continue
        kept.append(shlex.quote(arg))
    return " ".join(["python benchmarks/bench_omniglot_budget.py", *kept])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--omniglot", default=str(ROOT.parent / "shared" / "data" / "omniglot"))
    parser.add_argument("--learners", nargs="+", choices=LEARNERS, default=LEARNERS)
    parser.add_argument("--budgets", nargs="+", type=float, default=[1, 2, 5, 10, 15], help="minutes")
    parser.add_argument("--episodes", type=int, default=600, help="test episodes per setting")
    parser.add_argument("--workers", type=int, default=1, help="runs at a time, each in its own process")
    parser.add_argument("--cores-per-worker", type=int, default=2, help="cores and torch threads per run")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="auto: bfloat16 where the CPU computes it natively")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change the recipe (repeatable); such runs go to 'what was tried'")
    parser.add_argument("--note", help="a remark on the conditions of these runs, shown on the page")
    parser.add_argument("--results", default=str(ROOT / "docs" / "benchmarks" / "omniglot.json"))
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks" / "omniglot.md"))
    parser.add_argument("--report-only", action="store_true", help="regenerate the page and plot from --results")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3-second budgets, 5 test episodes, 1 core; prints, writes nothing")
    parser.add_argument("--run-one", nargs=2, metavar=("LEARNER", "MINUTES"), help=argparse.SUPPRESS)
    parser.add_argument("--cores", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, value in (("--workers", args.workers), ("--cores-per-worker", args.cores_per_worker),
                        ("--episodes", args.episodes)):
        if value < 1:
            parser.error(f"{name} must be at least 1, got {value}")
    if any(not b > 0 for b in args.budgets):
        parser.error(f"--budgets must be positive minutes, got {args.budgets}")
    overrides = dict(_override(item) for item in args.set)

    if args.run_one:
        if args.cores:
            os.sched_setaffinity(0, [int(c) for c in args.cores.split(",")])
        result = run_one(args.run_one[0], float(args.run_one[1]), overrides, args)
        print(json.dumps(result))
        return 0

    if args.quick:
        args.budgets, args.episodes, args.results = [0.05], 5, None
        args.workers, args.cores_per_worker = 1, 1
    failed = 0
    if not args.report_only:
        done = run_grid(args, _command_line(argv if argv is not None else sys.argv[1:]))
        failed = len(args.learners) * len(args.budgets) - len(done)
        if args.quick:
            print(render(done, "omniglot.png"))
            return 1 if failed else 0
    results = load_results(args.results)
    if not results:
        raise SystemExit(f"no results in {args.results}")
    output = Path(args.output)
    plot(results, output.with_suffix(".png"))
    output.write_text(render(results, output.with_suffix(".png").name))
    print(f"wrote {output} and {output.with_suffix('.png')} from {len(results)} runs"
          + (f"; {failed} run(s) failed (above)" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
