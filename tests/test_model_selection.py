import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score, cross_validate
from sklearn.neighbors import KNeighborsClassifier

from skmeta.model_selection import (
    EpisodicSplit,
    format_confidence_interval,
    mean_confidence_interval,
)


@pytest.fixture(scope="module")
def digits():
    return load_digits(return_X_y=True)


def _pool(n_classes=8, n_per_class=30, labels=None):
    """Labels 0..n_classes-1, interleaved so classes are not contiguous."""
    y = np.tile(np.arange(n_classes), n_per_class)
    if labels is not None:
        y = np.asarray(labels)[y]
    return np.zeros((y.shape[0], 2)), y


def _assert_episode(support, query, y, n_way, k_shot, n_query):
    support_classes, support_counts = np.unique(y[support], return_counts=True)
    assert support_classes.shape == (n_way,)
    assert np.all(support_counts == k_shot)
    assert set(y[query]) == set(support_classes)
    if n_query is not None:
        assert np.all(np.unique(y[query], return_counts=True)[1] == n_query)
    assert np.intersect1d(support, query).size == 0
    assert np.unique(support).size == support.size
    assert np.unique(query).size == query.size


def test_split_draws_k_shot_support_and_n_query_query_per_class():
    X, y = _pool(n_classes=8, n_per_class=30)
    cv = EpisodicSplit(n_way=5, k_shot=3, n_query=7, n_episodes=50, random_state=0)
    episodes = list(cv.split(X, y))
    assert len(episodes) == 50 == cv.get_n_splits()
    for support, query in episodes:
        assert support.shape == (15,) and query.shape == (35,)
        _assert_episode(support, query, y, 5, 3, 7)


def test_split_groups_indices_by_class_in_episode_order():
    X, y = _pool(n_classes=8, n_per_class=30)
    cv = EpisodicSplit(n_way=4, k_shot=2, n_query=3, n_episodes=20, random_state=0)
    for support, query in cv.split(X, y):
        class_order = y[support][::2]
        assert np.array_equal(y[support], np.repeat(class_order, 2))
        assert np.array_equal(y[query], np.repeat(class_order, 3))


def test_split_works_with_string_labels():
    X, y = _pool(n_classes=6, n_per_class=10, labels=list("abcdef"))
    cv = EpisodicSplit(n_way=3, k_shot=2, n_query=4, n_episodes=10, random_state=0)
    for support, query in cv.split(X, y):
        _assert_episode(support, query, y, 3, 2, 4)


def test_int_random_state_gives_same_episodes_on_every_call():
    X, y = _pool()
    cv = EpisodicSplit(n_episodes=10, n_query=5, random_state=42)
    first, second = list(cv.split(X, y)), list(cv.split(X, y))
    for (s1, q1), (s2, q2) in zip(first, second):
        assert np.array_equal(s1, s2) and np.array_equal(q1, q2)


def test_random_state_instance_advances_between_calls():
    X, y = _pool()
    cv = EpisodicSplit(n_episodes=10, n_query=5, random_state=np.random.RandomState(0))
    first, second = list(cv.split(X, y)), list(cv.split(X, y))
    assert any(not np.array_equal(s1, s2) for (s1, _), (s2, _) in zip(first, second))


def test_episodes_differ_within_one_call():
    X, y = _pool(n_classes=8, n_per_class=30)
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=5, n_episodes=30, random_state=0)
    supports = {tuple(support) for support, _ in cv.split(X, y)}
    assert len(supports) == 30
    classes_drawn = {c for support, _ in cv.split(X, y) for c in y[support]}
    assert classes_drawn == set(range(8))


def test_n_query_none_takes_all_remaining_examples_of_chosen_classes():
    X, y = _pool(n_classes=6, n_per_class=12)
    y = np.concatenate([y, [0, 0, 0]])  # class 0 has 15 examples
    X = np.zeros((y.shape[0], 2))
    cv = EpisodicSplit(n_way=6, k_shot=2, n_query=None, n_episodes=5, random_state=0)
    for support, query in cv.split(X, y):
        _assert_episode(support, query, y, 6, 2, None)
        assert np.array_equal(np.sort(np.concatenate([support, query])), np.arange(75))
        assert np.sum(y[query] == 0) == 13


def test_classes_too_small_for_an_episode_are_never_drawn():
    y = np.repeat(np.arange(5), [10, 10, 10, 3, 10])
    X = np.zeros((y.shape[0], 1))
    cv = EpisodicSplit(n_way=4, k_shot=1, n_query=5, n_episodes=20, random_state=0)
    drawn = {c for support, query in cv.split(X, y) for c in y[support]}
    assert drawn == {0, 1, 2, 4}


@pytest.mark.parametrize(
    "params, y, match",
    [
        ({"n_way": 20}, np.repeat(np.arange(8), 20), r"n_way=20 but y has only 8"),
        ({"n_way": 1}, np.repeat(np.arange(8), 20), r"n_way == 1, must be >= 2"),
        ({"k_shot": 0}, np.repeat(np.arange(8), 20), r"k_shot == 0, must be >= 1"),
        ({"n_query": 0}, np.repeat(np.arange(8), 20), r"n_query == 0, must be >= 1"),
        ({"n_episodes": 0}, np.repeat(np.arange(8), 20), r"n_episodes == 0, must"),
        (
            {"n_way": 5, "k_shot": 5, "n_query": 15},
            np.repeat(np.arange(8), [20, 20, 20, 19, 5, 30, 1, 2]),
            r"need k_shot \+ n_query = 20 .* only 4 of the 8 classes",
        ),
        (
            {"n_way": 3, "k_shot": 2, "n_query": None},
            np.repeat(np.arange(4), [3, 2, 2, 3]),
            r"need k_shot \+ 1 = 3 \(n_query=None\) .* only 2 of the 4 classes",
        ),
        ({}, np.linspace(0, 1, 100), r"Got 'continuous'"),
    ],
)
def test_invalid_parameters_raise_value_error_naming_the_numbers(params, y, match):
    cv = EpisodicSplit(**params)
    with pytest.raises(ValueError, match=match):
        next(cv.split(np.zeros((len(y), 1)), y))


def test_get_n_splits_returns_n_episodes_and_validates_it():
    assert EpisodicSplit(n_episodes=7).get_n_splits() == 7
    with pytest.raises(ValueError, match="n_episodes == 0"):
        EpisodicSplit(n_episodes=0).get_n_splits()


def test_split_without_y_raises():
    with pytest.raises(ValueError, match="needs the class labels y"):
        next(EpisodicSplit().split(np.zeros((10, 2)), None))


def test_split_warns_that_groups_are_ignored():
    X, y = _pool()
    with pytest.warns(UserWarning, match="groups parameter is ignored"):
        next(EpisodicSplit(random_state=0, n_query=5).split(X, y, groups=y))


def test_repr_and_pickle_round_trip():
    cv = EpisodicSplit(n_way=3, n_episodes=10, random_state=0)
    assert repr(cv) == (
        "EpisodicSplit(k_shot=1, n_episodes=10, n_query=15, n_way=3, random_state=0)"
    )
    X, y = _pool()
    cv.n_query = 5
    restored = pickle.loads(pickle.dumps(cv))
    for (s1, q1), (s2, q2) in zip(cv.split(X, y), restored.split(X, y)):
        assert np.array_equal(s1, s2) and np.array_equal(q1, q2)


def test_cross_val_score_gives_one_score_per_episode(digits):
    X, y = digits
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=15, n_episodes=40, random_state=0)
    scores = cross_val_score(KNeighborsClassifier(n_neighbors=1), X, y, cv=cv)
    assert scores.shape == (40,)
    # 75 query examples per episode: every score is a multiple of 1/75.
    assert np.allclose(np.round(scores * 75), scores * 75)
    # 1-NN on raw digits is a strong one-shot baseline (~0.7 to 0.9).
    assert 0.6 < scores.mean() < 1.0


def test_cross_validate_fits_on_support_and_scores_on_query(digits):
    X, y = digits
    cv = EpisodicSplit(n_way=5, k_shot=2, n_query=10, n_episodes=8, random_state=0)
    result = cross_validate(
        KNeighborsClassifier(n_neighbors=1),
        X,
        y,
        cv=cv,
        return_estimator=True,
        return_indices=True,
        n_jobs=2,
    )
    assert result["test_score"].shape == (8,)
    train_sets, test_sets = result["indices"]["train"], result["indices"]["test"]
    for estimator, train, test in zip(result["estimator"], train_sets, test_sets):
        classes, counts = np.unique(y[train], return_counts=True)
        assert train.shape == (10,) and np.all(counts == 2)
        assert np.array_equal(np.sort(estimator.classes_), classes)
        assert np.isin(y[test], classes).all() and test.shape == (50,)


def test_grid_search_with_refit_false_in_parallel(digits):
    X, y = digits
    cv = EpisodicSplit(n_way=5, k_shot=3, n_query=5, n_episodes=6, random_state=0)
    search = GridSearchCV(
        KNeighborsClassifier(),
        {"n_neighbors": [1, 3]},
        cv=cv,
        refit=False,
        n_jobs=2,
    )
    search.fit(X, y)
    assert search.n_splits_ == 6
    assert search.cv_results_["split5_test_score"].shape == (2,)
    assert "split6_test_score" not in search.cv_results_
    assert not hasattr(search, "best_estimator_")


@settings(max_examples=25, deadline=None)
@given(
    n_way=st.integers(2, 6),
    k_shot=st.integers(1, 5),
    n_query=st.one_of(st.none(), st.integers(1, 6)),
    n_classes=st.integers(6, 9),
    seed=st.integers(0, 2**31 - 1),
)
def test_every_episode_has_the_requested_shape(n_way, k_shot, n_query, n_classes, seed):
    X, y = _pool(n_classes=n_classes, n_per_class=11)
    cv = EpisodicSplit(n_way, k_shot, n_query, n_episodes=5, random_state=seed)
    for support, query in cv.split(X, y):
        _assert_episode(support, query, y, n_way, k_shot, n_query)
        expected_query = n_way * (11 - k_shot if n_query is None else n_query)
        assert support.shape == (n_way * k_shot,) and query.shape == (expected_query,)


def test_mean_confidence_interval_matches_hand_computation():
    scores = [0.0, 1.0] * 300
    mean, half_width = mean_confidence_interval(scores)
    assert mean == 0.5
    std = math.sqrt(600 * 0.25 / 599)  # 0.50042
    # Student t quantile for 599 degrees of freedom, from tables: 1.96394.
    assert half_width == pytest.approx(1.963932 * std / math.sqrt(600), rel=1e-6)
    # ... within 0.2% of the 1.96 papers use.
    assert half_width == pytest.approx(1.96 * 0.5004 / math.sqrt(600), rel=3e-3)


def test_confidence_interval_widens_with_confidence():
    scores = np.linspace(0.4, 0.9, 50)
    _, narrow = mean_confidence_interval(scores, confidence=0.9)
    _, wide = mean_confidence_interval(scores, confidence=0.99)
    assert 0 < narrow < wide


def test_constant_scores_have_zero_half_width():
    mean, half_width = mean_confidence_interval([0.8, 0.8, 0.8])
    assert mean == pytest.approx(0.8) and half_width == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "scores, confidence, match",
    [
        ([], 0.95, "at least 2 scores; got 0"),
        ([0.5], 0.95, "at least 2 scores; got 1"),
        ([0.5, np.nan, 0.7], 0.95, "1 NaN or infinite values out of 3"),
        ([[0.5, 0.6]], 0.95, "should be 1-D"),
        ([0.5, 0.6], 0.0, "confidence == 0.0, must be > 0"),
        ([0.5, 0.6], 1.5, "confidence == 1.5, must be < 1"),
    ],
)
def test_mean_confidence_interval_rejects_invalid_input(scores, confidence, match):
    with pytest.raises(ValueError, match=match):
        mean_confidence_interval(scores, confidence=confidence)


def test_format_confidence_interval_reports_percentages():
    scores = [0.0, 1.0] * 300
    assert format_confidence_interval(scores) == "50.00 +- 4.01 %"
    assert format_confidence_interval(scores, percent=False) == "0.5000 +- 0.0401"


def test_the_first_episodes_do_not_depend_on_n_episodes():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    short = list(EpisodicSplit(n_way=5, k_shot=1, n_query=5, n_episodes=50, random_state=0).split(X, y))
    long = list(EpisodicSplit(n_way=5, k_shot=1, n_query=5, n_episodes=200, random_state=0).split(X, y))
    for (a_support, a_query), (b_support, b_query) in zip(short, long):
        np.testing.assert_array_equal(a_support, b_support)
        np.testing.assert_array_equal(a_query, b_query)
