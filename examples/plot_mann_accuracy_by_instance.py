"""
MANN: accuracy by instance, Santoro's curve
===========================================

A memory-augmented neural network (Santoro et al., 2016) learns a task by
reading it: examples arrive in sequence, each with the label of the
*previous* one, and the network must store what it sees in its external
memory to name later examples of the same class. Santoro et al. plot the
accuracy at the first, second, ..., tenth appearance of a class within a
sequence: the first is a guess, later ones are recalled.

:meth:`~skmeta.memory.MANNClassifier.predict_proba_sequence` runs that
protocol. The task family is generated here so that the curve appears
within a minute of meta-training: classes are tight clusters around random
centres, and recognising which earlier example a new one resembles is all
a task takes. The Omniglot curve, after longer training, is in the
benchmarks of the user guide.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import GradientNormClipping

from skmeta import EpisodeSampler, MANNClassifier

rng = np.random.RandomState(0)
n_classes, n_per_class, n_features = 100, 20, 16
centres = rng.randn(n_classes, n_features)
X = (centres[:, None, :] + 0.3 * rng.randn(n_classes, n_per_class, n_features)).reshape(-1, n_features)
y = np.repeat(np.arange(n_classes), n_per_class)
X = StandardScaler().fit_transform(X).astype(np.float32)
train, new = y < 70, y >= 70

# %%
# Meta-train on sequences of 3 classes x 5 instances
# ---------------------------------------------------
# Shorter sequences than the paper's 5 x 10, and a small network, so that
# meta-training leaves its initial plateau within a minute. A fresh sampler
# pass every epoch (the sampler itself, not a list) keeps the network from
# memorising classes instead of learning to use its memory.
N_WAY, N_INSTANCES = 3, 5
tasks = EpisodeSampler(X[train], y[train], n_way=N_WAY, k_shot=N_INSTANCES, n_query=1, n_tasks=160, random_state=0)
net = dict(module__n_way=N_WAY, module__controller_size=32, module__memory_rows=16, module__memory_width=8,
           module__n_reads=1)
learner = MANNClassifier(**net, batch_size=8, lr=1e-2, max_epochs=1, verbose=0, random_state=0,
                         callbacks=[GradientNormClipping(10.0)])


def accuracy_by_instance(model, n_sequences=200, n_instances=N_INSTANCES):
    """Accuracy at each appearance of a class, over sequences of unseen
    classes x ``n_instances`` in random order (the same for every call)."""
    correct = np.zeros(n_instances)
    counts = np.zeros(n_instances)
    sequences = EpisodeSampler(X[new], y[new], n_way=N_WAY, k_shot=n_instances, n_query=1,
                               n_tasks=n_sequences, random_state=1)
    order_rng = np.random.RandomState(2)
    for task in sequences:
        order = order_rng.permutation(len(task.y_support))
        Xs, ys = np.asarray(task.X_support)[order], np.asarray(task.y_support)[order]
        hits = model.predict_proba_sequence(Xs, ys).argmax(1) == ys
        instance = np.array([np.sum(ys[: i + 1] == ys[i]) for i in range(len(ys))]) - 1
        np.add.at(correct, instance, hits)
        np.add.at(counts, instance, 1)
    return correct / counts


# %%
# The curve as meta-training goes on
# ----------------------------------
# ``partial_meta_fit`` continues meta-training where it stopped, so the
# curve can be measured after 1, 10 and 30 epochs (160 sequences each).
curves = {}
learner.meta_fit(tasks)
curves[1] = accuracy_by_instance(learner)
for done, more in ((10, 9), (30, 20)):
    learner.partial_meta_fit(tasks, epochs=more)
    curves[done] = accuracy_by_instance(learner)
print("meta-training loss by epoch:", np.round(learner.history[:, "train_loss"], 2))
for epochs, curve in curves.items():
    print(f"after {epochs:2d} epochs:", " ".join(f"{100 * a:4.0f}" for a in curve))

# %%
# The first instance of each class can only be guessed (among the labels
# not shown yet, so a little better than chance); from the second on, a
# network that has learned to use its memory recalls the label it stored.
fig, ax = plt.subplots(figsize=(6.5, 4))
instances = np.arange(1, N_INSTANCES + 1)
for epochs, curve in curves.items():
    ax.plot(instances, 100 * curve, "o-", label=f"after {epochs} epoch{'s' * (epochs > 1)} of meta-training")
ax.axhline(100 / N_WAY, color="k", linestyle=":", linewidth=1, label=f"chance ({N_WAY} classes)")
ax.set(xlabel="instance of the class in the sequence", ylabel="accuracy (%)", xticks=instances, ylim=(0, 100),
       title=f"{N_WAY} unseen classes x {N_INSTANCES} instances, labels one step late")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
plt.show()
