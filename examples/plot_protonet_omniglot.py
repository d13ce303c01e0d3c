"""Prototypical Networks on Omniglot: learning curves and accuracy against shots.

Meta-trains ProtoNetClassifier with meta-validation on held-out alphabets,
then plots (left) the training loss and the validation accuracy of each
epoch from skorch's history, and (right) test accuracy with its 95%
confidence interval against the number of shots, next to 1-nearest-neighbour
on raw pixels.

    python examples/plot_protonet_omniglot.py [--omniglot PATH] [--output protonet_omniglot.png]

About two minutes on 2 CPU cores. Needs matplotlib (`pip install -e ".[plot]"`).
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from skmeta import EpisodeSampler, ProtoNetClassifier
from skmeta.datasets import load_omniglot
from skmeta.model_selection import EpisodicSplit, mean_confidence_interval
from skmeta.modules import Conv4
from skmeta.tasks import rotate_classes

ROOT = Path(__file__).resolve().parents[1]
VALIDATION, TEST = ["Sanskrit"], ["Japanese_(katakana)", "Tagalog"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--omniglot", default=str(ROOT.parent / "shared" / "data" / "omniglot"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=200, help="test episodes per point")
    parser.add_argument("--output", default="protonet_omniglot.png")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)

    data = load_omniglot(args.omniglot)
    X, y, alphabet = data.data, data.target, data.alphabet
    train = ~np.isin(alphabet, VALIDATION + TEST)
    val, test = np.isin(alphabet, VALIDATION), np.isin(alphabet, TEST)

    tasks = EpisodeSampler(X[train], y[train], n_way=5, k_shot=1, n_query=15, n_tasks=300,
                           augment=rotate_classes(), random_state=0)
    val_tasks = EpisodeSampler(X[val], y[val], n_way=5, k_shot=1, n_query=15, n_tasks=100, random_state=1)
    precision = "bfloat16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "float32"
    learner = ProtoNetClassifier(Conv4, max_epochs=args.epochs, precision=precision, random_state=0)
    learner.meta_fit(tasks, val_tasks=val_tasks)
    history = learner.history

    shots = [1, 2, 3, 5, 10]
    curves = {"ProtoNet (meta-learned Conv-4)": learner, "1-NN on raw pixels": KNeighborsClassifier(1)}
    results = {name: [] for name in curves}
    for k in shots:
        cv = EpisodicSplit(n_way=5, k_shot=k, n_query=5, n_episodes=args.episodes, random_state=0)
        for name, estimator in curves.items():
            results[name].append(mean_confidence_interval(cross_val_score(estimator, X[test], y[test], cv=cv)))

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = history[:, "epoch"]
    left.plot(epochs, history[:, "train_loss"], "o-", label="training loss")
    left.set_xlabel("epoch (300 episodes)")
    left.set_ylabel("loss")
    twin = left.twinx()
    twin.plot(epochs, history[:, "valid_acc"], "s-", color="tab:orange", label="validation accuracy (Sanskrit)")
    twin.set_ylabel("5-way 1-shot accuracy")
    left.set_title("meta-training (skorch history)")
    left.legend(loc="center right")
    twin.legend(loc="lower right")
    for name, points in results.items():
        means, halves = np.array(points).T
        right.errorbar(shots, 100 * means, yerr=100 * halves, marker="o", capsize=3, label=name)
    right.set_xlabel("shots per class (5-way)")
    right.set_ylabel("accuracy on held-out alphabets (%)")
    right.set_xscale("log")
    right.set_xticks(shots, [str(k) for k in shots])
    right.set_title(f"Japanese (katakana) + Tagalog, {args.episodes} episodes, 95% CI")
    right.legend()
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
