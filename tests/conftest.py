"""Shared fixtures: real data paths and small task families."""

from pathlib import Path

import numpy as np
import pytest
import torch

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
    """Classes that differ only in a few shared directions, buried under
    larger noise in the others: a task family where meta-learning the
    embedding (which directions matter) clearly beats any fixed metric."""
    rng = np.random.RandomState(random_state)
    basis = np.linalg.qr(rng.randn(n_features, n_features))[0]
    means = np.zeros((n_classes, n_features))
    means[:, :n_informative] = rng.randn(n_classes, n_informative) * 1.5
    noise = rng.randn(n_classes, n_per_class, n_features)
    noise[..., :n_informative] *= 0.3
    noise[..., n_informative:] *= 2.0
    X = (means[:, None, :] + noise).reshape(-1, n_features) @ basis.T
    y = np.repeat(np.arange(n_classes), n_per_class)
    return X.astype(np.float32), y
