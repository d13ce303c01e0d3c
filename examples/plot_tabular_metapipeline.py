"""
Tabular few-shot learning: a meta-fitted MetaPipeline against scikit-learn
==========================================================================

In a table with many classes, new classes can be learned from a few rows
each once an embedding has been meta-learned on the others.
:func:`~skmeta.pipeline.make_meta_pipeline` chains preprocessing with a
meta-learner: ``meta_fit`` fits the scaler once on the meta-training pool
and freezes it, then meta-trains the learner on scaled episodes; ``fit``
adapts the learner alone. Used in ``cross_val_score``, the whole pipeline is
evaluated as one classifier.

The data is the UCI *letter* dataset (16 features computed from images of
capital letters): 13 letters for meta-training, the 13 others for 5-way
episodes, with 1 to 10 rows per letter. scikit-learn's classifiers fit each
support set from scratch, behind a scaler fitted on it. Without the
tabular datasets (``$SKMETA_DATA/tabular`` or ``shared/data/tabular``
beside the repository), scikit-learn's 64-feature digits stand in.
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skmeta import EpisodeSampler, ProtoNetClassifier
from skmeta.datasets import load_tabular
from skmeta.model_selection import EpisodicSplit, mean_confidence_interval
from skmeta.pipeline import make_meta_pipeline
from skmeta.tasks import split_classes


def find_data(name):
    """``$SKMETA_DATA/<name>``, or the shared copy beside the repository."""
    for home in (os.environ.get("SKMETA_DATA"), "../shared/data", "../../shared/data"):
        if home and (Path(home) / name).is_dir():
            return Path(home)
    return None


data_home = find_data("tabular")
if data_home is not None:
    X, y = load_tabular("letter", data_home=data_home, return_X_y=True)
    name = "letter"
else:
    X, y = load_digits(return_X_y=True)
    name = "digits"
X = np.asarray(X, dtype=np.float32)
train, test = split_classes(y, train_size=0.5, random_state=0)  # classes, not rows, are split

tasks = EpisodeSampler(X[train], y[train], n_way=5, k_shot=1, n_query=15, n_tasks=300, random_state=0)
pipe = make_meta_pipeline(StandardScaler(), ProtoNetClassifier(max_epochs=4, verbose=0, random_state=0))
pipe.meta_fit(tasks, X_pool=X[train])  # the scaler on the meta-training pool, then ProtoNet
print(pipe.steps[0])

# %%
# Against shots, on the same episodes
# -----------------------------------
SHOTS = (1, 2, 5, 10)
methods = {
    "MetaPipeline(scaler, ProtoNet)": pipe,
    "1-NN": make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=1)),
    "logistic regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    "random forest": make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=50, random_state=0)),
}
results = {method: [] for method in methods}
for k in SHOTS:
    cv = EpisodicSplit(n_way=5, k_shot=k, n_query=10, n_episodes=100, random_state=0)
    for method, estimator in methods.items():
        results[method].append(mean_confidence_interval(cross_val_score(estimator, X[test], y[test], cv=cv)))
for method, points in results.items():
    print(f"{method:32s}" + "".join(f"{k:>3d}-shot {100 * m:5.1f}  " for k, (m, _) in zip(SHOTS, points)))

# %%
# The meta-learned embedding pays most with one or two rows per class; with
# ten, classifiers fitted on the support set alone catch up.
fig, ax = plt.subplots(figsize=(6.5, 4))
for method, points in results.items():
    means, halves = 100 * np.array(points).T
    ax.plot(SHOTS, means, "o-", label=method)
    ax.fill_between(SHOTS, means - halves, means + halves, alpha=0.2)
ax.set(xlabel="rows per class (5-way)", ylabel="accuracy on unseen classes (%)", xticks=SHOTS,
       title=f"{name}: 100 episodes per point, 95% confidence intervals")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
plt.show()
