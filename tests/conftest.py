"""Shared fixtures: real data paths and small task families."""

from pathlib import Path

import numpy as np
import pytest
import torch

from skmeta.datasets import make_subspace_classification

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
OMNIGLOT = SHARED / "data" / "omniglot"
TABULAR = SHARED / "data" / "tabular"

# Tests run the library single-threaded: deterministic and fast on 2 cores.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def omniglot_path():
    if not (OMNIGLOT / "images_background_small1.zip").exists():
        pytest.skip(f"Omniglot zips not found in {OMNIGLOT} (../shared is absent)")
    return OMNIGLOT


@pytest.fixture(scope="session")
def tabular_path():
    if not (TABULAR / "index.csv").exists():
        pytest.skip(f"tabular datasets not found in {TABULAR} (../shared is absent)")
    return TABULAR


def make_subspace_classes(n_classes=60, n_per_class=20, n_features=24, n_informative=3, random_state=0):
    """A small family on which meta-learning the metric clearly pays off."""
    data = make_subspace_classification(
        n_classes=n_classes, n_samples_per_class=n_per_class, n_features=n_features,
        n_informative=n_informative, random_state=random_state,
    )
    return data.data, data.target


def make_clusters(n_classes=60, n_per_class=20, n_features=16, noise=0.3, random_state=0):
    """Classes as tight Gaussian clusters around random centres: a family
    where remembering which support example a query resembles is all it
    takes, and an untrained network cannot do it."""
    rng = np.random.RandomState(random_state)
    centres = rng.randn(n_classes, n_features)
    X = centres[:, None, :] + noise * rng.randn(n_classes, n_per_class, n_features)
    return X.reshape(-1, n_features).astype(np.float32), np.repeat(np.arange(n_classes), n_per_class)


def make_relevance_dataset(n_features, n_classes=6, n_per_class=30, n_informative=2, random_state=0):
    """Classes that differ in a few features among many noisy ones, each
    feature on its own scale and offset: knowing which features to trust
    from the support set (their within-class spread) is what transfers."""
    rng = np.random.RandomState(random_state)
    means = np.zeros((n_classes, n_features))
    informative = rng.choice(n_features, n_informative, replace=False)
    means[:, informative] = rng.randn(n_classes, n_informative) * 3
    X = means.repeat(n_per_class, 0) + rng.randn(n_classes * n_per_class, n_features)
    X = X * np.exp(rng.uniform(-2, 2, n_features)) + rng.uniform(-50, 50, n_features)
    return X.astype(np.float32), np.repeat(np.arange(n_classes), n_per_class)


def make_relevance_family(n_tasks=400, random_state=0):
    """Episodes across 8 relevance datasets of different widths, and a dataset of a width never seen."""
    from skmeta.tasks import DatasetCollection

    datasets = [make_relevance_dataset(d, random_state=i) for i, d in enumerate((6, 10, 14, 8, 12, 16, 20, 7))]
    tasks = DatasetCollection(datasets, n_way=(2, 5), k_shot=(1, 5), n_query=5, n_tasks=n_tasks,
                              random_state=random_state)
    return list(tasks), *make_relevance_dataset(11, random_state=99)


def subspace_tasks():
    """Meta-training episodes of 40 subspace classes, and examples of 20 unseen ones."""
    from skmeta import EpisodeSampler

    X, y = make_subspace_classes()
    train = y < 40
    tasks = list(EpisodeSampler(X[train], y[train], n_way=5, k_shot=2, n_query=5, n_tasks=60, random_state=0))
    return tasks, X[~train], y[~train]
