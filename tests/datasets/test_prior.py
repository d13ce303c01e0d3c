import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from skmeta.datasets import PriorTasks, make_prior_tasks
from skmeta.tasks import Task

TASKS = list(make_prior_tasks(n_tasks=200, random_state=0))


def test_tasks_are_balanced_episodes_within_the_ranges():
    for task in TASKS:
        assert isinstance(task, Task)
        n_way = task.n_way
        assert 2 <= n_way <= 10
        support = np.bincount(task.y_support.numpy())
        query = np.bincount(task.y_query.numpy())
        # k_shot support and n_query query rows of every class.
        assert len(support) == len(query) == n_way
        assert len(set(support)) == 1 and 1 <= support[0] <= 10
        assert len(set(query)) == 1 and 5 <= query[0] <= 15
        assert 1 <= task.X_support.shape[1] == task.X_query.shape[1] <= 100
        assert task.X_support.dtype == task.X_query.dtype == torch.float32


def test_ranges_are_covered():
    ways = [t.n_way for t in TASKS]
    widths = [t.X_support.shape[1] for t in TASKS]
    shots = [len(t.y_support) // t.n_way for t in TASKS]
    assert min(ways) == 2 and max(ways) >= 9
    assert min(shots) == 1 and max(shots) == 10
    # Log-uniform widths: narrow tables about as common per octave as wide ones.
    assert min(widths) == 1 and max(widths) >= 80
    assert 0.2 < np.mean(np.array(widths) <= 10) < 0.7


def test_values_are_finite_except_planned_missing_ones():
    with_missing = 0
    for task in TASKS:
        X = torch.cat([task.X_support, task.X_query])
        missing = torch.isnan(X)
        assert torch.isfinite(X[~missing]).all()
        with_missing += bool(missing.any())
    # missing_rate=0.2 of the tasks, each with missing cells in about half its features.
    assert 0.08 < with_missing / len(TASKS) < 0.3
    assert not any(torch.isnan(t.X_support).any() for t in make_prior_tasks(n_tasks=50, missing_rate=0, random_state=1))


def test_mixed_feature_types():
    constant = categorical = total = 0
    for task in TASKS:
        X = torch.cat([task.X_support, task.X_query]).numpy()
        for column in X.T:
            observed = column[~np.isnan(column)]
            if len(observed) < 20:
                continue
            total += 1
            distinct = len(np.unique(observed))
            constant += distinct == 1
            categorical += 2 <= distinct <= 8 and np.all(observed == np.round(observed))
    assert 0.005 < constant / total < 0.08
    assert 0.1 < categorical / total < 0.45
    every = next(iter(make_prior_tasks(constant_rate=1.0, max_features=5, random_state=0)))
    assert (every.X_support.std(0) == 0).all()


def test_labels_depend_on_the_features():
    # 1-NN on the support set beats chance by a margin: the labels are a
    # function of the features, not noise.
    accuracy, chance = [], []
    for task in TASKS[:100]:
        Xs, Xq = np.nan_to_num(task.X_support.numpy()), np.nan_to_num(task.X_query.numpy())
        mean, std = Xs.mean(0), Xs.std(0) + 1e-6
        knn = KNeighborsClassifier(1).fit((Xs - mean) / std, task.y_support.numpy())
        accuracy.append(knn.score((Xq - mean) / std, task.y_query.numpy()))
        chance.append(1 / task.n_way)
    assert np.mean(accuracy) > np.mean(chance) + 0.05


def _one_nn_minus_logistic(tasks):
    gaps = []
    for task in tasks:
        Xs, Xq = task.X_support.numpy(), task.X_query.numpy()
        mean, std = Xs.mean(0), Xs.std(0) + 1e-6
        nn = KNeighborsClassifier(1).fit((Xs - mean) / std, task.y_support.numpy())
        linear = LogisticRegression().fit((Xs - mean) / std, task.y_support.numpy())
        gaps.append(nn.score((Xq - mean) / std, task.y_query.numpy())
                    - linear.score((Xq - mean) / std, task.y_query.numpy()))
    return np.array(gaps)


def test_local_labels_are_regions_of_the_feature_space():
    # Nearest-prototype classes (local_rate=1) are unions of regions of the
    # observed features: on narrow tables a 1-NN beats a linear rule there,
    # and does not where classes come from thresholds or argmaxes of nodes.
    kwargs = dict(n_tasks=120, max_features=3, k_shot=10, n_query=10, missing_rate=0, random_state=0)
    local = _one_nn_minus_logistic(make_prior_tasks(local_rate=1.0, **kwargs))
    smooth = _one_nn_minus_logistic(make_prior_tasks(local_rate=0.0, **kwargs))
    assert local.mean() > 0.02
    assert local.mean() > smooth.mean() + 0.04


def test_seeded_stream_is_deterministic():
    a = list(PriorTasks(n_tasks=5, random_state=3))
    b = list(PriorTasks(n_tasks=5, random_state=3))
    c = list(PriorTasks(n_tasks=5, random_state=4))
    for x, y in zip(a, b):
        torch.testing.assert_close(x.X_support, y.X_support, equal_nan=True)
        torch.testing.assert_close(x.y_query, y.y_query)
    assert any(x.X_support.shape != z.X_support.shape or not torch.equal(x.y_support, z.y_support)
               for x, z in zip(a, c))
    # Each pass continues the stream: an epoch sees new tasks.
    tasks = PriorTasks(n_tasks=2, random_state=0)
    first, second = list(tasks), list(tasks)
    assert not all(x.X_support.shape == y.X_support.shape and torch.equal(x.X_support, y.X_support)
                   for x, y in zip(first, second))


def test_fixed_shape():
    tasks = list(make_prior_tasks(n_tasks=20, n_way=4, k_shot=3, n_query=2, max_features=1, random_state=0))
    for task in tasks:
        # A class with too few rows in the drawn dataset is dropped.
        assert task.y_support.tolist() == list(np.repeat(np.arange(task.n_way), 3))
        assert task.X_query.shape == (2 * task.n_way, 1)
    assert np.mean([t.n_way == 4 for t in tasks]) > 0.5


def test_length():
    assert len(make_prior_tasks(n_tasks=7)) == 7
    with pytest.raises(TypeError, match="endless"):
        len(make_prior_tasks())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_way=1), "n_way"),
        (dict(k_shot=(3, 2)), "k_shot"),
        (dict(n_query=0), "n_query"),
        (dict(max_features=0), "max_features"),
        (dict(missing_rate=1.5), "missing_rate"),
        (dict(categorical_rate=-0.1), "categorical_rate"),
        (dict(local_rate=2), "local_rate"),
        (dict(n_tasks=0), "n_tasks"),
    ],
)
def test_bad_parameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_prior_tasks(**kwargs)
