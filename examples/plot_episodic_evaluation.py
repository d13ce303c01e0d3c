"""
Few-shot evaluation with EpisodicSplit: accuracy against shots and ways
=======================================================================

Few-shot results are means over many episodes, reported with a 95%
confidence interval. :class:`~skmeta.model_selection.EpisodicSplit` is a
scikit-learn cross-validator whose splits are episodes: each one adapts the
learner to an N-way K-shot support set (``fit``) and scores it on queries of
the same classes. With :func:`~sklearn.model_selection.cross_val_score` it
evaluates a meta-trained learner exactly as papers do, and any scikit-learn
classifier on the same episodes.

Here a :class:`~skmeta.metric.ProtoNetClassifier` meta-trained on 5-way
1-shot episodes is evaluated on held-out Omniglot alphabets as the number of
shots and of ways grows, next to a 1-nearest-neighbour classifier on raw
pixels (scikit-learn's digits stand in when Omniglot is absent).
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from skmeta import EpisodeSampler, ProtoNetClassifier
from skmeta.datasets import load_omniglot
from skmeta.model_selection import EpisodicSplit, mean_confidence_interval
from skmeta.modules import Conv4
from skmeta.tasks import rotate_classes


def find_data(name):
    """``$SKMETA_DATA/<name>``, or the shared copy beside the repository."""
    for home in (os.environ.get("SKMETA_DATA"), "../shared/data", "../../shared/data"):
        if home and (Path(home) / name).is_dir():
            return Path(home) / name
    return None


omniglot = find_data("omniglot")
if omniglot is not None:
    data = load_omniglot(omniglot)
    X, y = data.data, data.target
    new = np.isin(data.alphabet, ["Japanese_(katakana)", "Tagalog"])
    WAYS = (5, 10, 20)
else:
    digits = load_digits()
    images = np.pad(np.kron(digits.images / 16, np.ones((3, 3))), ((0, 0), (2, 2), (2, 2)))
    X, y = images.reshape(len(images), -1).astype(np.float32), digits.target
    new = y >= 5
    WAYS = (2, 3, 5)
SHOTS = (1, 2, 5, 10)

tasks = EpisodeSampler(X[~new], y[~new], n_way=5, k_shot=1, n_query=5, n_tasks=200,
                       augment=rotate_classes(), random_state=0)
learner = ProtoNetClassifier(Conv4, module__hidden_channels=32, max_epochs=3, verbose=0, random_state=0)
learner.meta_fit(tasks)

# %%
# Evaluate on the same episodes
# -----------------------------
# One ``EpisodicSplit`` per point, with a fixed ``random_state``: both
# methods see the same support sets and queries. ``cross_val_score`` clones
# the learner for each episode; a clone keeps what was meta-learned.
methods = {"ProtoNet (meta-learned)": learner, "1-NN on raw pixels": KNeighborsClassifier(n_neighbors=1)}


def evaluate(n_way, k_shot):
    cv = EpisodicSplit(n_way=n_way, k_shot=k_shot, n_query=5, n_episodes=100, random_state=0)
    return {name: mean_confidence_interval(cross_val_score(method, X[new], y[new], cv=cv))
            for name, method in methods.items()}


by_shots = [evaluate(5, k) for k in SHOTS]
by_ways = [evaluate(n, 1) for n in WAYS]
for k, result in zip(SHOTS, by_shots):
    print(f"5-way {k:2d}-shot: " + ", ".join(f"{name} {100 * m:.1f} +- {100 * h:.1f} %"
                                           for name, (m, h) in result.items()))

# %%
# Accuracy with its 95% confidence band
# -------------------------------------
# More shots help both methods; the meta-learned embedding gains most where
# examples are fewest. More ways make every episode harder.
fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
for ax, xs, results, label in ((axes[0], SHOTS, by_shots, "shots per class (5-way)"),
                               (axes[1], WAYS, by_ways, "ways (1-shot)")):
    for name in methods:
        means, halves = 100 * np.array([result[name] for result in results]).T
        ax.plot(xs, means, "o-", label=name)
        ax.fill_between(xs, means - halves, means + halves, alpha=0.25)
    ax.set(xlabel=label, xticks=xs)
    ax.grid(alpha=0.3)
axes[0].set_ylabel("accuracy on unseen classes (%)")
axes[0].legend(loc="lower right")
fig.suptitle("100 episodes per point, 95% confidence intervals")
fig.tight_layout()
plt.show()
