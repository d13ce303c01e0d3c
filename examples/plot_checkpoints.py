"""
Saving, loading and resuming meta-training with skorch's checkpoints
====================================================================

Meta-training can take hours; a learner should survive the end of a
session. Because ``meta_fit`` runs skorch's training loop, skorch's
:class:`~skorch.callbacks.Checkpoint` saves a meta-learner as it saves any
net. With ``f_pickle`` it pickles the whole learner (meta-parameters,
optimiser state, history, hyper-parameters): loading the pickle gives a
learner that can adapt and predict at once, and that resumes meta-training
with ``partial_meta_fit``.

Here meta-training stops after 6 epochs, the checkpoint is loaded as a new
session would load it, and 6 more epochs continue from it. An uninterrupted
12-epoch run on the same tasks is drawn for reference.
"""

import pickle
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from sklearn.model_selection import cross_val_score
from skorch.callbacks import Checkpoint

from skmeta import EpisodeSampler, ProtoNetClassifier
from skmeta.datasets import make_subspace_classification
from skmeta.model_selection import EpisodicSplit, format_confidence_interval

data = make_subspace_classification(n_classes=100, n_samples_per_class=20, random_state=0)
X, y = data.data, data.target
train, new = y < 70, y >= 70
tasks = EpisodeSampler(X[train], y[train], n_way=5, k_shot=1, n_query=5, n_tasks=100, random_state=0)
val_tasks = list(EpisodeSampler(X[new], y[new], n_way=5, k_shot=1, n_query=5, n_tasks=50, random_state=1))

# %%
# Save at the end of every epoch
# ------------------------------
# ``monitor=None`` saves every epoch (a callable or ``"valid_acc_best"``-style
# key would save only improvements); only the pickle is written here.
folder = Path(tempfile.mkdtemp())
checkpoint = Checkpoint(monitor=None, f_params=None, f_optimizer=None, f_criterion=None, f_history=None,
                        f_pickle="learner.pkl", dirname=str(folder))
learner = ProtoNetClassifier(max_epochs=6, lr=1e-3, callbacks=[checkpoint], verbose=0, random_state=0)
learner.meta_fit(tasks, val_tasks=val_tasks)
print(f"saved {(folder / 'learner.pkl').stat().st_size / 1024:.0f} KiB after epoch {len(learner.history)}")

# %%
# Load and resume
# ---------------
# The loaded learner is meta-fitted: it can be evaluated at once, and
# ``partial_meta_fit`` continues where meta-training stopped (its history
# grows from 6 to 12 epochs).
with open(folder / "learner.pkl", "rb") as f:
    restored = pickle.load(f)
cv = EpisodicSplit(n_way=5, k_shot=1, n_query=5, n_episodes=200, random_state=0)
print("restored, 5-way 1-shot:", format_confidence_interval(cross_val_score(restored, X[new], y[new], cv=cv)))
restored.partial_meta_fit(tasks, val_tasks=val_tasks, epochs=6)
print("resumed for 6 epochs:  ", format_confidence_interval(cross_val_score(restored, X[new], y[new], cv=cv)))

reference = ProtoNetClassifier(max_epochs=12, lr=1e-3, verbose=0, random_state=0)
reference.meta_fit(tasks, val_tasks=val_tasks)

# %%
# The resumed run picks up the loss and the validation accuracy where the
# checkpoint left them.
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
for ax, key, label in ((left, "train_loss", "meta-training loss"), (right, "valid_acc", "meta-validation accuracy")):
    ax.plot(reference.history[:, "epoch"], reference.history[:, key], "-", color="lightgray", linewidth=6,
            label="uninterrupted, 12 epochs")
    ax.plot(restored.history[:6, "epoch"], restored.history[:6, key], "o-", label="first session (saved)")
    ax.plot(restored.history[5:, "epoch"], restored.history[5:, key], "s--", label="loaded and resumed")
    ax.axvline(6.5, color="k", linestyle=":", linewidth=1)
    ax.set(xlabel="epoch", title=label)
    ax.grid(alpha=0.3)
left.legend()
fig.tight_layout()
plt.show()
