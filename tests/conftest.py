import warnings
"""Shared fixtures: real data paths and small task families."""

from pathlib import Path

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


# The estimator check no skorch-based learner can pass, with its reason.
SKORCH_INIT_XFAIL = {
    "check_no_attributes_set_in_init": "skorch records its state (initialized_, history_) and routed module__* parameters in __init__",
}


def sklearn_checks(estimators, expected_failed_checks=SKORCH_INIT_XFAIL):
    """scikit-learn's estimator checks on ``estimators``, as a test function
    to assign to a ``test_*`` name. The checks fit learners that were never
    meta-fitted, so NotMetaFittedWarning is silenced; ``expected_failed_checks``
    maps each check that cannot apply to its reason."""
    from sklearn.utils.estimator_checks import parametrize_with_checks

    from skmeta.base import NotMetaFittedWarning

    @parametrize_with_checks(list(estimators), expected_failed_checks=lambda estimator: expected_failed_checks)
    def test_sklearn_compatible(estimator, check):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotMetaFittedWarning)
            check(estimator)

    return test_sklearn_compatible


def subspace_tasks():
    """Meta-training episodes of 40 subspace classes, and examples of 20 unseen ones."""
    from skmeta import EpisodeSampler

    X, y = make_subspace_classes()
    train = y < 40
    tasks = list(EpisodeSampler(X[train], y[train], n_way=5, k_shot=2, n_query=5, n_tasks=60, random_state=0))
    return tasks, X[~train], y[~train]
