"""
Tuning an adaptation parameter with GridSearchCV
================================================

Some parameters are read when a learner adapts to a task, not when it is
meta-trained: MAML's number of gradient steps ``adapt_steps`` and their
size ``adapt_lr``, ProtoNet's ``distance``. They can be tuned after
``meta_fit`` with scikit-learn's :class:`~sklearn.model_selection.GridSearchCV`
over :class:`~skmeta.model_selection.EpisodicSplit` episodes of validation
classes: each candidate is a clone, and a clone keeps what was meta-learned,
so the search compares ways of adapting one meta-trained model, without
meta-training again.

``refit=False``: refitting the best candidate on the pooled evaluation set
would not be a few-shot task.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

from skmeta import EpisodeSampler, MAMLClassifier
from skmeta.model_selection import EpisodicSplit

X, y = load_digits(return_X_y=True)
X = X / 16
train, valid = y < 6, y >= 6  # classes, not examples, are split
tasks = EpisodeSampler(X[train], y[train], n_way=4, k_shot=1, n_query=5, n_tasks=200, random_state=0)
learner = MAMLClassifier(inner_lr=0.4, batch_size=8, max_epochs=5, verbose=0, random_state=0)
learner.meta_fit(tasks)  # meta-trained with one inner step of size 0.4

# %%
# Search over steps and step sizes
# --------------------------------
grid = {"adapt_steps": [0, 1, 2, 3, 5, 10], "adapt_lr": [0.1, 0.4, 1.0]}
cv = EpisodicSplit(n_way=4, k_shot=1, n_query=5, n_episodes=100, random_state=0)
search = GridSearchCV(learner, grid, cv=cv, refit=False).fit(X[valid], y[valid])
print("best:", search.best_params_, f"accuracy {search.best_score_:.3f}")

# %%
# Mean accuracy over the 100 episodes, with a 95% confidence interval from
# the per-episode scores. Zero steps predict with the meta-learned head
# before any adaptation, near chance, since labels are assigned anew in
# every episode. Smaller steps need more of them; too large a step
# overshoots. The best setting differs from the one step of 0.4 that
# meta-training used.
results = search.cv_results_
fig, ax = plt.subplots(figsize=(7, 4))
for lr in grid["adapt_lr"]:
    rows = np.flatnonzero(results["param_adapt_lr"] == lr)
    steps = np.array(results["param_adapt_steps"][rows], dtype=int)
    mean = 100 * results["mean_test_score"][rows]
    half = 100 * 1.96 * results["std_test_score"][rows] / np.sqrt(cv.get_n_splits())
    ax.errorbar(steps, mean, yerr=half, marker="o", capsize=3, label=f"adapt_lr={lr}")
ax.axhline(25, color="k", linestyle=":", linewidth=1, label="chance")
ax.set(xlabel="adapt_steps", ylabel="4-way 1-shot accuracy, validation digits (%)",
       title="GridSearchCV(MAMLClassifier, cv=EpisodicSplit(...), refit=False)")
ax.title.set_fontsize(10)
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
plt.show()
