import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris, load_wine
from sklearn.utils import Bunch

from skmeta.tasks import DatasetCollection, split_classes


def _datasets():
    """Three datasets of different widths; column 0 is a row id, unique across
    datasets, so episodes can be traced back to rows."""
    rng = np.random.RandomState(0)
    out, start = {}, 0
    for name, n_features, n_classes, per_class in (("narrow", 3, 2, 20), ("wide", 9, 6, 15), ("mid", 5, 4, 25)):
        n = n_classes * per_class
        X = np.column_stack([np.arange(start, start + n), rng.randn(n, n_features - 1)])
        out[name] = (X.astype(np.float32), np.repeat([f"{name}{c}" for c in range(n_classes)], per_class))
        start += n
    return out


DATASETS = _datasets()
ROW = {int(row[0]): (name, label) for name, (X, y) in DATASETS.items() for row, label in zip(X, y)}


def test_split_classes_keeps_every_class_on_one_side():
    y = np.repeat(np.arange(26), 3)
    train, test = split_classes(y, train_size=13, random_state=0)
    assert len(set(y[train])) == 13 and len(set(y[test])) == 13
    assert not set(y[train]) & set(y[test])
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(y)))


def test_split_classes_by_fraction_is_deterministic():
    y = np.repeat(list("abcdefghij"), 4)
    a = split_classes(y, train_size=0.7, random_state=3)
    b = split_classes(y, train_size=0.7, random_state=3)
    np.testing.assert_array_equal(a[0], b[0])
    assert len(set(y[a[0]])) == 7
    assert len(set(y[split_classes(y, train_size=0.01, random_state=0)[0]])) == 1  # at least one class a side


@pytest.mark.parametrize(
    "y, train_size, match",
    [
        (np.zeros(5), 0.5, "at least 2"),
        (np.arange(4), 4, r"number of classes in \[1, 3\]"),
        (np.arange(4), 1.0, "fraction in"),
        (np.arange(4), True, "fraction in"),
        (np.zeros((2, 2)), 0.5, "1-D"),
    ],
)
def test_split_classes_bad_input(y, train_size, match):
    with pytest.raises(ValueError, match=match):
        split_classes(y, train_size=train_size)


def test_episodes_come_from_one_dataset_each_with_its_own_width():
    tasks = DatasetCollection(DATASETS, n_way=(2, 4), k_shot=(1, 3), n_query=4, n_tasks=60, random_state=0)
    widths = {"narrow": 3, "wide": 9, "mid": 5}
    seen = set()
    for task in tasks:
        rows = torch.cat([task.X_support[:, 0], task.X_query[:, 0]]).int().tolist()
        sources = {ROW[r][0] for r in rows}
        assert len(sources) == 1
        source = sources.pop()
        seen.add(source)
        assert task.X_support.shape[1] == widths[source] and task.X_query.shape[1] == widths[source]
        assert len(set(rows)) == len(rows), "support and query rows are distinct"
        n_way = task.n_way
        assert 2 <= n_way <= min(4, {"narrow": 2, "wide": 6, "mid": 4}[source])
        k_shot = len(task.y_support) // n_way
        assert 1 <= k_shot <= 3
        np.testing.assert_array_equal(task.y_support.numpy(), np.repeat(np.arange(n_way), k_shot))
        np.testing.assert_array_equal(task.y_query.numpy(), np.repeat(np.arange(n_way), 4))
        labels = [ROW[int(r)][1] for r in task.X_support[:, 0]]
        np.testing.assert_array_equal(labels, np.repeat(task.classes, k_shot))
    assert seen == set(widths)


def test_ranges_are_drawn_over_their_whole_span():
    tasks = DatasetCollection({"wide": DATASETS["wide"]}, n_way=(2, 5), k_shot=(1, 4), n_query=2,
                              n_tasks=200, random_state=0)
    shapes = {(t.n_way, len(t.y_support) // t.n_way) for t in tasks}
    assert shapes == {(w, k) for w in range(2, 6) for k in range(1, 5)}


def test_same_seed_same_episodes_and_fresh_episodes_each_pass():
    a = DatasetCollection(DATASETS, n_tasks=5, k_shot=2, n_query=3, random_state=1)
    b = DatasetCollection(DATASETS, n_tasks=5, k_shot=2, n_query=3, random_state=1)
    first, again = list(a), list(b)
    second = list(a)
    assert len(second) == len(a) == 5

    def rows(tasks):
        return [int(r) for t in tasks for r in t.X_support[:, 0]]

    assert rows(first) == rows(again) and rows(second) != rows(first)


def test_endless_collection_and_its_length():
    tasks = DatasetCollection(DATASETS, k_shot=1, n_query=1, random_state=0)
    stream = iter(tasks)
    assert len([next(stream) for _ in range(100)]) == 100
    with pytest.raises(TypeError, match="endless"):
        len(tasks)


def test_bunches_and_pairs_are_accepted():
    iris = load_iris()
    tasks = DatasetCollection([iris, load_wine(return_X_y=True)], n_way=3, k_shot=1, n_query=2,
                              n_tasks=10, random_state=0)
    assert tasks.names_ == ["0", "1"]
    np.testing.assert_array_equal(tasks.n_classes_, [3, 3])
    assert {t.X_support.shape[1] for t in tasks} == {4, 13}


@pytest.mark.parametrize(
    "datasets, kwargs, match",
    [
        ({"nominal": (np.array([["a"], ["b"]] * 20, dtype=object), np.arange(40) % 2)}, {}, "non-numeric.*OneHotEncoder"),
        ({"small": (np.zeros((6, 2)), np.arange(6) % 2)}, {"k_shot": 2, "n_query": 2}, "has 0 classes with at least k_shot \\+ n_query = 4"),
        ({"one": (np.zeros((40, 2)), np.zeros(40))}, {"k_shot": 1, "n_query": 1}, "has 1 classes"),
        ({"nan": (np.full((40, 2), np.nan), np.arange(40) % 2)}, {"k_shot": 1, "n_query": 1}, "NaN"),
        ({"flat": (np.zeros(40), np.arange(40) % 2)}, {"k_shot": 1, "n_query": 1}, "one row per example"),
        ({}, {}, "no datasets"),
        (DATASETS, {"n_way": (3, 2)}, "n_way must be"),
        (DATASETS, {"k_shot": 0}, "k_shot must be"),
        (DATASETS, {"n_query": 0}, "n_query == 0, must be >= 1"),
        (DATASETS, {"n_tasks": 0}, "n_tasks == 0, must be >= 1"),
    ],
)
def test_bad_collections_raise(datasets, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DatasetCollection(datasets, **kwargs)


def test_a_bunch_is_read_by_data_and_target():
    X, y = DATASETS["mid"]
    tasks = DatasetCollection({"mid": Bunch(data=X, target=y)}, n_way=2, k_shot=1, n_query=1, n_tasks=3, random_state=0)
    assert tasks.names_ == ["mid"] and all(t.X_support.shape == (2, 5) for t in tasks)
