"""Fuzz meta-training with bad tasks and count what happens.

    python benchmarks/fuzz_meta_fit.py                 # 100 tasks per learner configuration
    python benchmarks/fuzz_meta_fit.py --cases 500

Each case is a task drawn at random: widths that match the learner or not,
query sets of other widths, empty sets, labels absent from the support set,
and NaN, +-inf, values beyond float32 (1e39) or huge ones (1e20, 1e30)
written into random cells. Every case goes to ``partial_meta_fit`` of a
meta-fitted learner, then the adapted learner predicts on clean queries.
Outcomes: a clear error (ValueError or TypeError) with the meta-parameters
bit-identical; an acceptance (huge but finite values may be learned from);
an acceptance of a task that holds values that are not finite in float32
or mismatched widths (silent acceptance: the target is zero); any other
exception; NaN or infinite meta-parameters or probabilities afterwards
(the target is zero). Prints one table row per configuration and the total.
"""

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_meta_fit_reliability import CONFIGS, _learner, _tasks  # noqa: E402

from skmeta import Task  # noqa: E402
from skmeta.utils.estimator_checks import meta_state  # noqa: E402

POISON = [np.nan, np.inf, -np.inf, 1e39, -1e39, 1e30, 1e20]


def bad_task(rng, width):
    n_way, k_shot, n_query = rng.randint(1, 5), rng.randint(1, 4), rng.randint(0, 4)
    support_width = width if rng.rand() < 0.7 else rng.choice([1, width + 3])
    query_width = support_width if rng.rand() < 0.8 else support_width + 1
    X_support = rng.randn(n_way * k_shot, support_width)
    X_query = rng.randn(n_way * n_query, query_width)
    poisoned = False
    for _ in range(rng.randint(0, 3)):
        target = X_support if rng.rand() < 0.5 or not X_query.size else X_query
        target.reshape(-1)[rng.randint(target.size)] = POISON[rng.randint(len(POISON))]
        poisoned = True
    y_support = np.repeat(np.arange(n_way), k_shot)
    y_query = np.repeat(np.arange(n_way), n_query) + (rng.rand() < 0.2)
    values = np.concatenate([X_support.ravel(), X_query.ravel()])
    with np.errstate(over="ignore"):
        beyond_float32 = not np.all(np.isfinite(values.astype(np.float32)))
    bad = (poisoned and beyond_float32) or query_width != support_width or support_width != width or n_query == 0
    return Task(X_support, y_support, X_query, y_query), bad


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="describe every NaN output")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = [name for name, (_, _, kind) in CONFIGS.items() if kind == "classes"]
    totals = np.zeros(5, dtype=int)
    print(f"{'configuration':<14} cases  clear-errors  accepted  silent-acceptances  other-errors  NaN-outputs")
    for name in names:
        learner = _learner(name).meta_fit(_tasks(name))
        width = learner.meta_n_features_in_
        rng = np.random.RandomState(args.seed)
        counts = np.zeros(5, dtype=int)  # clear, accepted, silent, other, nan
        for _ in range(args.cases):
            task, bad = bad_task(rng, width)
            before = meta_state(learner)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    learner.partial_meta_fit([task], epochs=1)
                except (ValueError, TypeError):
                    after = meta_state(learner)
                    unchanged = all(torch.equal(before[k], after[k]) for k in before)
                    counts[0 if unchanged else 3] += 1
                    continue
                except Exception:
                    counts[3] += 1
                    continue
                counts[2 if bad else 1] += 1
                state = meta_state(learner)
                X, y = np.random.RandomState(1).randn(12, width), np.repeat([0, 1, 2], 4)
                proba = learner.fit(X, y).predict_proba(X)
                if not all(torch.isfinite(v).all() for v in state.values()) or not np.isfinite(proba).all():
                    counts[4] += 1
                    if args.verbose:
                        print(f"  NaN after {name} accepted: X_support max {np.nanmax(np.abs(task.X_support)):.3g}, "
                              f"finite weights {all(torch.isfinite(v).all() for v in state.values())}")
                    learner = _learner(name).meta_fit(_tasks(name))
        totals += counts
        print(f"{name:<14} {args.cases:>5}  {counts[0]:>12}  {counts[1]:>8}  {counts[2]:>18}  {counts[3]:>12}  "
              f"{counts[4]:>11}")
    print(f"{'total':<14} {args.cases * len(names):>5}  {totals[0]:>12}  {totals[1]:>8}  {totals[2]:>18}  "
          f"{totals[3]:>12}  {totals[4]:>11}")


if __name__ == "__main__":
    main()
