"""
Every learner on one set of episodes
====================================

skmeta's estimators share one contract, so comparing them is a loop: each
is meta-trained on the same tasks, then evaluated with
:func:`~sklearn.model_selection.cross_val_score` on the same
:class:`~skmeta.model_selection.EpisodicSplit` episodes of classes none of
them has seen, next to two scikit-learn classifiers fitted on each support
set alone.

The task family is generated
(:func:`~skmeta.datasets.make_subspace_classification`): classes differ in
a few of 32 directions and are buried in noise in the others, so a learner
gains from meta-training exactly when it learns which directions matter.
Every learner has a small MLP and sees 1000 episodes. That budget suits the
metric-based learners; the optimisation-based ones, and MANN above all
(whose loss stays on a plateau for thousands of episodes, see the
memory-based guide), need longer. Their ranking on Omniglot, with longer
training, is in the benchmarks of the user guide.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from skorch.callbacks import GradientNormClipping

from skmeta import (ANILClassifier, EpisodeSampler, MAMLClassifier, MANNClassifier, MatchingNetworkClassifier,
                    MetaSGDClassifier, PretrainedClassifier, ProtoNetClassifier, RelationNetworkClassifier,
                    ReptileClassifier, SiameseNetworkClassifier)
from skmeta.datasets import make_subspace_classification
from skmeta.model_selection import EpisodicSplit, mean_confidence_interval

data = make_subspace_classification(n_classes=100, n_samples_per_class=20, random_state=0)
X, y = data.data, data.target
train, new = y < 70, y >= 70

tasks = EpisodeSampler(X[train], y[train], n_way=5, k_shot=1, n_query=5, n_tasks=200, random_state=0)
common = dict(max_epochs=5, verbose=0, random_state=0)
learners = {
    "ProtoNet": ProtoNetClassifier(**common),
    "Matching Networks": MatchingNetworkClassifier(**common),
    "Relation Network": RelationNetworkClassifier(**common),
    "Siamese Network": SiameseNetworkClassifier(**common),
    "pre-train + centroid": PretrainedClassifier(**common),
    "MAML": MAMLClassifier(inner_lr=0.4, batch_size=8, **common),
    "Meta-SGD": MetaSGDClassifier(inner_lr=0.4, batch_size=8, **common),
    "ANIL": ANILClassifier(inner_lr=0.4, batch_size=8, **common),
    "Reptile": ReptileClassifier(batch_size=8, **common),
    "MANN": MANNClassifier(module__controller_size=32, module__memory_rows=16, module__memory_width=8,
                           module__n_reads=1, batch_size=8, lr=1e-2, callbacks=[GradientNormClipping(10.0)],
                           **common),
}
seconds = {}
for name, learner in learners.items():
    start = time.perf_counter()
    # PretrainedClassifier pools the tasks' examples and trains an ordinary
    # classifier over all their classes; the others learn episode by episode.
    learner.meta_fit(tasks)
    seconds[name] = time.perf_counter() - start

# %%
# The same 200 episodes of unseen classes for every method.
cv = list(EpisodicSplit(n_way=5, k_shot=1, n_query=5, n_episodes=200, random_state=0).split(X[new], y[new]))
methods = dict(learners, **{"1-NN (no meta-training)": KNeighborsClassifier(n_neighbors=1),
                            "logistic regression": LogisticRegression(max_iter=1000)})
results = {name: mean_confidence_interval(cross_val_score(method, X[new], y[new], cv=cv))
           for name, method in methods.items()}
for name, (mean, half) in sorted(results.items(), key=lambda item: -item[1][0]):
    took = f"meta-training {seconds[name]:5.1f} s" if name in seconds else ""
    print(f"{name:24s} {100 * mean:5.1f} +- {100 * half:4.1f} %  {took}")

# %%
# Mean accuracy with 95% confidence intervals; grey bars learned nothing
# across tasks.
names = sorted(results, key=lambda name: results[name][0])
means, halves = 100 * np.array([results[name] for name in names]).T
colors = ["tab:gray" if name not in learners else "tab:blue" for name in names]
fig, ax = plt.subplots(figsize=(7, 5))
ax.barh(names, means, xerr=halves, color=colors, capsize=3)
ax.axvline(20, color="k", linestyle=":", linewidth=1)
ax.annotate("chance", (20, -0.6), xytext=(3, 0), textcoords="offset points", fontsize=8)
ax.set(xlabel="5-way 1-shot accuracy on unseen classes (%)", xlim=(0, 100),
       title="200 episodes, 95% confidence intervals")
ax.grid(axis="x", alpha=0.3)
fig.tight_layout()
plt.show()
