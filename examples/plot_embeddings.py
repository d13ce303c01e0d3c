"""
What ProtoNet's embedding does to classes it has never seen
===========================================================

A metric-based learner is also a transformer: after ``meta_fit``,
``transform`` maps images to the meta-learned embedding, the space where a
query is compared with the prototypes. Meta-training only ever saw other
classes, yet drawings of *new* characters gather by class in that space,
which is why one example per class suffices to classify them.

Ten characters of alphabets held out from meta-training, twenty drawings
each, are shown in two dimensions: PCA of the raw pixels, PCA of the
embedding, and t-SNE of the embedding. Without Omniglot, scikit-learn's
digits 5-9 play the unseen classes.
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

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
    digits = load_digits()
    images = np.pad(np.kron(digits.images / 16, np.ones((3, 3))), ((0, 0), (2, 2), (2, 2)))
    X, y = images.reshape(len(images), -1).astype(np.float32), digits.target
    new = y >= 5

tasks = EpisodeSampler(X[~new], y[~new], n_way=5, k_shot=1, n_query=5, n_tasks=200,
                       augment=rotate_classes(), random_state=0)
learner = ProtoNetClassifier(Conv4, module__hidden_channels=32, max_epochs=3, verbose=0, random_state=0)
learner.meta_fit(tasks)

# %%
# Embed unseen classes
# --------------------
rng = np.random.RandomState(0)
classes = rng.choice(np.unique(y[new]), min(10, len(np.unique(y[new]))), replace=False)
rows = np.concatenate([rng.choice(np.flatnonzero(y == c), 20, replace=False) for c in classes])
Z = learner.transform(X[rows])
print(f"{X.shape[1]} pixels -> {Z.shape[1]} embedding dimensions")

views = {
    "raw pixels, PCA": PCA(2).fit_transform(X[rows]),
    "ProtoNet embedding, PCA": PCA(2).fit_transform(Z),
    "ProtoNet embedding, t-SNE": TSNE(2, perplexity=15, init="pca", random_state=0).fit_transform(Z),
}

# %%
# Each colour is one class; a star marks its mean (the prototype it would
# have with all twenty drawings as support).
fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
colors = plt.cm.tab10(np.arange(len(classes)))
for ax, (title, points) in zip(axes, views.items()):
    for c, color in zip(classes, colors):
        mine = points[y[rows] == c]
        ax.scatter(*mine.T, s=12, color=color, alpha=0.7)
        ax.scatter(*mine.mean(0), s=160, marker="*", color=color, edgecolor="k")
    ax.set(title=title, xticks=[], yticks=[])
fig.suptitle("Ten classes never seen in meta-training, twenty drawings each")
fig.tight_layout()
plt.show()
