"""Peak memory that predict_proba adds on one million query rows.

Tiny MLP learners meta-fitted on load_digits (64 features), 5-way 1-shot;
the peak resident set size during predict_proba minus the resident size
before it (Linux: /proc/self/status, peak reset through clear_refs).

    python benchmarks/bench_predict_memory.py [n_rows]
"""

import sys
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits

from skmeta import (
    EpisodeSampler,
    MAMLClassifier,
    MatchingNetworkClassifier,
    ProtoNetClassifier,
    RelationNetworkClassifier,
    SiameseNetworkClassifier,
)
from skmeta.tabular import FeatureVoteClassifier

torch.set_num_threads(1)


def _status(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / 1024  # MiB


def main(n_rows=1_000_000):
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    tasks = EpisodeSampler(X[y < 5], y[y < 5], n_way=5, k_shot=1, n_query=5, n_tasks=20, random_state=0)
    support = np.concatenate([np.flatnonzero(y == c)[:1] for c in range(5, 10)])
    queries = X[np.random.default_rng(0).integers(0, len(X), n_rows)]
    tiny = dict(module__hidden_sizes=(32,), max_epochs=1, verbose=0, random_state=0)
    learners = {
        "ProtoNet": ProtoNetClassifier(module__out_features=16, **tiny),
        "Matching": MatchingNetworkClassifier(module__out_features=16, **tiny),
        "Relation": RelationNetworkClassifier(module__out_features=16, **tiny),
        "Siamese": SiameseNetworkClassifier(module__out_features=16, **tiny),
        "MAML": MAMLClassifier(inner_lr=0.4, **tiny),
        "FeatureVote": FeatureVoteClassifier(max_epochs=1, verbose=0, random_state=0),
    }
    print(f"{'learner':<12} {'peak MiB added':>15} {'seconds':>8}   ({n_rows} rows, torch {torch.__version__})")
    for name, learner in learners.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            learner.meta_fit(tasks).fit(X[support], y[support])
        before = _status("VmRSS")
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset the peak (VmHWM) to the current size
        start = time.perf_counter()
        proba = learner.predict_proba(queries)
        seconds = time.perf_counter() - start
        print(f"{name:<12} {_status('VmHWM') - before:>15.0f} {seconds:>8.1f}")
        del proba


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:]))
