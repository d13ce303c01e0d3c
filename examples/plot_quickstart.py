"""
Quick start: meta-train ProtoNet on Omniglot, adapt to new characters, predict
===============================================================================

Prototypical Networks (Snell et al., 2017) meta-learn an embedding in which
each class is represented by the mean of its few support examples, its
*prototype*, and a query takes the class of the nearest prototype.

This example meta-trains :class:`~skmeta.metric.ProtoNetClassifier` on
5-way 1-shot episodes of six Omniglot alphabets, then adapts it with ``fit``
to five characters of an alphabet it has never seen, one drawing each, and
predicts other drawings of them. The figure shows the support set, the
queries and the predictions.

Omniglot's zips are read from ``$SKMETA_DATA/omniglot`` or from
``shared/data/omniglot`` beside the repository; without them the example
runs on scikit-learn's handwritten digits (classes 0-4 for meta-training,
5-9 for the new task), so it runs anywhere.
"""

# %%
# Load the images
# ---------------
# A task is a few labelled examples of classes never seen in meta-training,
# so classes, not images, are split: whole alphabets are held out.
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from skmeta import EpisodeSampler, ProtoNetClassifier
from skmeta.datasets import load_omniglot
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
else:
    # Digits as 28x28 images (8x8 pixels upscaled 3 times, then padded).
    digits = load_digits()
    images = np.pad(np.kron(digits.images / 16, np.ones((3, 3))), ((0, 0), (2, 2), (2, 2)))
    X, y = images.reshape(len(images), -1).astype(np.float32), digits.target
    new = y >= 5
print(f"{len(np.unique(y[~new]))} classes for meta-training, {len(np.unique(y[new]))} new ones")

# %%
# Meta-train
# ----------
# 600 episodes of 5-way 1-shot classification, each class rotated by a
# multiple of 90 degrees as a new class (Vinyals et al., 2016).
tasks = EpisodeSampler(X[~new], y[~new], n_way=5, k_shot=1, n_query=5, n_tasks=200,
                       augment=rotate_classes(), random_state=0)
learner = ProtoNetClassifier(Conv4, module__hidden_channels=32, max_epochs=3, verbose=0, random_state=0)
learner.meta_fit(tasks)

# %%
# Adapt to a new task and predict
# -------------------------------
# ``fit`` only computes the five prototypes: the meta-learned embedding is
# untouched, so adapting takes milliseconds.
rng = np.random.RandomState(1)
classes = rng.choice(np.unique(y[new]), 5, replace=False)
support = np.array([rng.choice(np.flatnonzero(y == c)) for c in classes])
queries = np.concatenate([rng.choice(np.setdiff1d(np.flatnonzero(y == c), support), 3, replace=False)
                          for c in classes])
rng.shuffle(queries)
learner.fit(X[support], y[support])
predicted = learner.predict(X[queries])
print(f"accuracy on {len(queries)} queries: {np.mean(predicted == y[queries]):.2f}")

# %%
# The support set (top), the queries and, under each, the support example
# of the class predicted for it; a red frame marks a mistake.
side = int(np.sqrt(X.shape[1]))
fig, axes = plt.subplots(3, len(queries), figsize=(len(queries) * 0.75, 3.0))
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_frame_on(False)
for i, index in enumerate(support):
    axes[0, i].imshow(X[index].reshape(side, side), cmap="gray_r")
axes[0, 0].set_ylabel("support", rotation=0, ha="right", va="center")
for j, index in enumerate(queries):
    axes[1, j].imshow(X[index].reshape(side, side), cmap="gray_r")
    match = support[list(classes).index(predicted[j])]
    axes[2, j].imshow(X[match].reshape(side, side), cmap="gray_r")
    if predicted[j] != y[index]:
        axes[2, j].set_frame_on(True)
        for spine in axes[2, j].spines.values():
            spine.set(color="red", linewidth=2)
axes[1, 0].set_ylabel("query", rotation=0, ha="right", va="center")
axes[2, 0].set_ylabel("predicted", rotation=0, ha="right", va="center")
fig.suptitle("5-way 1-shot on characters never seen in meta-training")
fig.tight_layout()
plt.show()
