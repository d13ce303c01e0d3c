"""
Learning curves from the history, with early stopping
=====================================================

``meta_fit`` is skorch's training loop with tasks in place of samples, so
everything skorch records and every callback it offers work unchanged. With
``val_tasks``, each epoch ends with meta-validation on classes unseen in
meta-training, and skorch's
:class:`~skorch.callbacks.EarlyStopping` stops meta-training once the
validation accuracy has stopped improving.

The learner is a :class:`~skmeta.metric.ProtoNetClassifier` with a small
MLP, on a generated family of classes that differ only in a few directions
of a 32-dimensional space
(:func:`~skmeta.datasets.make_subspace_classification`): what an embedding
must learn is which directions matter.
"""

import matplotlib.pyplot as plt
import numpy as np
from skorch.callbacks import EarlyStopping

from skmeta import EpisodeSampler, ProtoNetClassifier
from skmeta.datasets import make_subspace_classification

data = make_subspace_classification(n_classes=120, n_samples_per_class=20, random_state=0)
X, y = data.data, data.target
train, valid = y < 80, y >= 80  # classes, not samples, are split

tasks = EpisodeSampler(X[train], y[train], n_way=5, k_shot=1, n_query=5, n_tasks=100, random_state=0)
# Validation episodes are drawn once, so every epoch is scored on the same ones.
val_tasks = list(EpisodeSampler(X[valid], y[valid], n_way=5, k_shot=1, n_query=5, n_tasks=100, random_state=1))

stopping = EarlyStopping(monitor="valid_acc", lower_is_better=False, patience=4)
learner = ProtoNetClassifier(max_epochs=60, lr=1e-3, callbacks=[stopping], verbose=0, random_state=0)
learner.meta_fit(tasks, val_tasks=val_tasks)

# %%
# ``history`` holds one row per epoch.
history = learner.history
epochs = np.array(history[:, "epoch"])
best = epochs[int(np.argmax(history[:, "valid_acc"]))]
print(f"stopped after epoch {epochs[-1]} of 60; best validation accuracy at epoch {best}: "
      f"{max(history[:, 'valid_acc']):.3f}")

# %%
# Training loss falls throughout; validation accuracy on unseen classes
# levels off, and meta-training stops ``patience`` epochs after its best.
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(epochs, history[:, "train_loss"], "o-", label="meta-training loss")
ax.plot(epochs, history[:, "valid_loss"], "o-", label="meta-validation loss")
ax.set(xlabel="epoch (100 episodes)", ylabel="loss")
twin = ax.twinx()
twin.plot(epochs, history[:, "valid_acc"], "s-", color="tab:green", label="meta-validation accuracy")
twin.axvline(best, color="gray", linestyle="--")
twin.annotate("best epoch", (best, 0.3), xycoords=("data", "axes fraction"), xytext=(-4, 0),
              textcoords="offset points", ha="right")
twin.set_ylabel("5-way 1-shot accuracy, unseen classes")
lines = ax.get_lines() + twin.get_lines()[:1]
ax.legend(lines, [line.get_label() for line in lines], loc="upper center")
ax.set_title("EarlyStopping(monitor='valid_acc', patience=4)")
fig.tight_layout()
plt.show()
