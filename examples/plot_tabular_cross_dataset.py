"""
Few-shot accuracy against shots on datasets never seen in meta-training
=======================================================================

A :class:`~skmeta.tabular.FeatureVoteClassifier` is meta-trained on 28 of
the 35 KEEL/UCI tabular datasets, each with its own number and meaning of
features, then adapts to each of the 7 others from k labelled rows per class.
It is compared, on the same episodes, with three scikit-learn classifiers
behind a scaler fitted on the same k rows per class: 1-nearest-neighbour,
logistic regression and a random forest.

This is one fold of ``benchmarks/bench_tabular.py``, which rotates the
held-out datasets over all 35, adds few-shot learning of new classes within
a dataset (ProtoNet and MAML), and reports confidence intervals
(``docs/benchmarks/tabular.md``), with more episodes. The datasets are
read from ``$SKMETA_DATA/tabular`` or ``shared/data/tabular`` beside the
repository; without them, 35 generated datasets with 4 to 20 features and 2
to 5 classes stand in.
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skmeta.datasets import list_tabular_datasets, load_tabular
from skmeta.model_selection import EpisodicSplit, mean_confidence_interval
from skmeta.tabular import FeatureVoteClassifier
from skmeta.tasks import DatasetCollection

SHOTS = (1, 2, 5, 10)


def find_data(name):
    """``$SKMETA_DATA/<name>``, or the shared copy beside the repository."""
    for home in (os.environ.get("SKMETA_DATA"), "../shared/data", "../../shared/data"):
        if home and (Path(home) / name).is_dir():
            return Path(home)
    return None


DATA_HOME = find_data("tabular")


def encoded(name):
    """Numeric features: nominal columns one-hot encoded (no labels involved)."""
    if DATA_HOME is None:
        i = int(name[len("generated"):])
        rng = np.random.RandomState(i)
        n_features = rng.randint(4, 21)
        X, y = make_classification(n_samples=400, n_features=n_features, n_informative=min(n_features, 4),
                                   n_redundant=0, n_classes=rng.randint(2, 6), random_state=i)
        return X.astype(np.float32), y
    data = load_tabular(name, data_home=DATA_HOME)
    X = data.data
    if data.categorical_features.any():
        X = ColumnTransformer([("nominal", OneHotEncoder(sparse_output=False), data.categorical_features)],
                              remainder="passthrough").fit_transform(X)
    return np.asarray(X, dtype=np.float32), data.target


# %%
# Hold out 7 datasets; meta-train on episodes of the 28 others, 2- to 5-way
# and 1 to 10 shots, so that one learner serves every episode shape.
if DATA_HOME is not None:
    names = sorted(list_tabular_datasets(data_home=DATA_HOME)["name"])
else:
    names = [f"generated{i}" for i in range(35)]
held_out = list(np.random.RandomState(0).permutation(names)[:7])
data = {name: encoded(name) for name in names}
tasks = DatasetCollection({n: data[n] for n in names if n not in held_out},
                          n_way=(2, 5), k_shot=(1, 10), n_query=10, n_tasks=1000, random_state=0)
learner = FeatureVoteClassifier(max_epochs=4, verbose=0, random_state=0).meta_fit(tasks)

# %%
# Adapt to each held-out dataset at every way it allows (2 to 5) and each
# number of shots, on the same episodes for every method.
methods = {
    "FeatureVote (meta-learned)": learner,
    "1-NN": make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=1)),
    "logistic regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    "random forest": make_pipeline(StandardScaler(), RandomForestClassifier(random_state=0)),
}
scores = {(method, k): [] for method in methods for k in SHOTS}
for name in held_out:
    X, y = data[name]
    for k in SHOTS:
        cv = [split for n_way in range(2, min(5, len(np.unique(y))) + 1)
              for split in EpisodicSplit(n_way=n_way, k_shot=k, n_query=15, n_episodes=5,
                                         random_state=0).split(X, y)]
        for method, estimator in methods.items():
            scores[(method, k)].extend(cross_val_score(estimator, X, y, cv=cv, n_jobs=2))

# %%
# Mean accuracy over all episodes, with 95% confidence intervals.
fig, ax = plt.subplots(figsize=(6, 4))
for method in methods:
    means, halves = zip(*(mean_confidence_interval(scores[(method, k)]) for k in SHOTS))
    ax.errorbar(SHOTS, 100 * np.array(means), yerr=100 * np.array(halves), marker="o", capsize=3, label=method)
    print(f"{method:28s}" + "".join(f"{k:>3d}-shot {100 * m:5.1f}  " for k, m in zip(SHOTS, means)))
ax.set(xlabel="shots per class (k)", ylabel="accuracy (%)", xticks=SHOTS,
       title=f"Datasets never seen in meta-training\n({', '.join(held_out)})")
ax.title.set_fontsize(9)
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
plt.show()
