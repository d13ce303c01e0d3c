"""MetaSearchCV: a portfolio of configurations meta-learned across datasets."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from joblib import Memory
from scipy.stats import randint
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import ShuffleSplit, cross_val_score
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.validation import check_is_fitted

from skmeta._meta_search import greedy_portfolio, posterior_scores
from skmeta.base import NotMetaFittedWarning
from skmeta.model_selection import MetaSearchCV
from skmeta.tasks import DatasetCollection


GRID = {"max_depth": [1, 2, 3, None], "min_samples_leaf": [1, 8]}


class CountingTree(DecisionTreeClassifier):
    """A decision tree that counts its fits (across all clones)."""

    fits = 0

    def fit(self, X, y, sample_weight=None, check_input=True):
        type(self).fits += 1
        return super().fit(X, y, sample_weight=sample_weight, check_input=check_input)


def datasets(n_datasets=6, random_state=0):
    """Small classification datasets of different shapes and difficulty."""
    rng = np.random.RandomState(random_state)
    out = {}
    for i in range(n_datasets):
        n_classes = 2 + i % 3
        X, y = make_classification(
            n_samples=60 + 10 * i, n_features=4 + i, n_informative=2 + i % 3, n_redundant=0,
            n_classes=n_classes, n_clusters_per_class=1, flip_y=0.1 * (i % 2), random_state=rng,
        )
        out[f"d{i}"] = (X, y)
    return out


def search(**params):
    defaults = {"param_distributions": GRID, "n_candidates": 3, "cv": 3}
    return MetaSearchCV(DecisionTreeClassifier(random_state=0), **{**defaults, **params})


@pytest.fixture(scope="module")
def meta_fitted():
    return search().meta_fit(datasets())


def regret(scores, columns):
    return float((scores.max(axis=1) - scores[:, columns].max(axis=1)).mean())


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 8)), elements=st.floats(0, 1)))
def test_greedy_regret_never_increases_and_reaches_zero(scores):
    chosen, regrets = greedy_portfolio(scores, scores.shape[1])
    assert sorted(chosen) == list(range(scores.shape[1]))
    assert np.all(np.diff(regrets) <= 0)
    assert regrets[-1] == 0
    for n in range(1, len(chosen) + 1):
        assert regrets[n - 1] == pytest.approx(regret(scores, chosen[:n]))


def test_regret_on_meta_training_datasets_never_increases(meta_fitted):
    scores = meta_fitted.meta_scores_
    assert scores.shape == (6, 8)
    full = search(n_candidates=8).meta_fit(datasets())
    assert np.all(np.diff(full.meta_regret_) <= 0)
    assert full.meta_regret_[-1] == 0
    assert meta_fitted.portfolio_ == full.portfolio_[:3]
    columns = [meta_fitted.meta_pool_.index(p) for p in meta_fitted.portfolio_]
    # The first candidate is the best on average, as no other single one can beat it.
    assert scores[:, columns[0]].mean() == scores.mean(axis=0).max()
    assert meta_fitted.meta_regret_[-1] == pytest.approx(regret(scores, columns))


def test_fit_evaluates_only_the_portfolio(meta_fitted):
    X, y = make_classification(n_samples=80, n_features=6, random_state=1)
    counting = clone(meta_fitted).set_params(estimator=CountingTree(random_state=0))
    CountingTree.fits = 0
    counting.fit(X, y)
    assert CountingTree.fits == 3 * 3 + 1  # candidates x folds, and the refit
    assert counting.cv_results_["params"] == meta_fitted.portfolio_
    assert counting.best_params_ in meta_fitted.portfolio_
    assert counting.score(X, y) == counting.best_estimator_.score(X, y)


def test_clone_keeps_portfolio_and_forgets_the_dataset(meta_fitted):
    X, y = make_classification(n_samples=80, n_features=6, random_state=1)
    fitted = clone(meta_fitted).fit(X, y)
    copy = clone(fitted)
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)
    assert copy.portfolio_ == meta_fitted.portfolio_ and copy.portfolio_ is not meta_fitted.portfolio_
    np.testing.assert_array_equal(copy.meta_scores_, meta_fitted.meta_scores_)
    assert copy.meta_scores_ is not meta_fitted.meta_scores_
    assert copy.fit(X, y).best_params_ == fitted.best_params_
    # fit leaves what meta_fit learned as it was.
    np.testing.assert_array_equal(fitted.meta_scores_, meta_fitted.meta_scores_)
    assert fitted.portfolio_ == meta_fitted.portfolio_


def test_nearest_datasets_choose_the_candidates(meta_fitted):
    data = datasets()
    nearest = clone(meta_fitted).set_params(n_neighbors=1, n_candidates=1)
    for row, (X, y) in enumerate(data.values()):
        # A meta-training dataset is its own nearest: its own best configuration comes first.
        chosen, _ = greedy_portfolio(meta_fitted.meta_scores_[[row]], 1)
        assert nearest.fit(X, y).cv_results_["params"] == [meta_fitted.meta_pool_[chosen[0]]]


def test_parallel_meta_fit_equals_serial():
    serial = search(n_jobs=1).meta_fit(datasets(3))
    parallel = search(n_jobs=2).meta_fit(datasets(3))
    np.testing.assert_array_equal(parallel.meta_scores_, serial.meta_scores_)
    assert parallel.portfolio_ == serial.portfolio_


def test_memory_avoids_evaluating_again(tmp_path):
    memory = Memory(tmp_path, verbose=0)
    cached = MetaSearchCV(CountingTree(random_state=0), GRID, n_candidates=2, cv=3, memory=memory)
    data = datasets(3)
    CountingTree.fits = 0
    first = clone(cached).meta_fit(data)
    assert CountingTree.fits == 3 * 8 * 3
    CountingTree.fits = 0
    again = clone(cached).meta_fit(data)
    assert CountingTree.fits == 0
    np.testing.assert_array_equal(again.meta_scores_, first.meta_scores_)
    # Only the new dataset is evaluated when the collection grows.
    data["new"] = make_classification(n_samples=50, n_features=3, n_informative=2, n_redundant=0, random_state=5)
    CountingTree.fits = 0
    grown = clone(cached).meta_fit(data)
    assert CountingTree.fits == 8 * 3
    np.testing.assert_array_equal(grown.meta_scores_[:3], first.meta_scores_)


def test_inputs_of_every_kind():
    data = datasets(3)
    as_dict = search().meta_fit(data)
    as_list = search().meta_fit(list(data.values()))
    np.testing.assert_array_equal(as_list.meta_scores_, as_dict.meta_scores_)
    assert as_list.meta_dataset_names_ == ["0", "1", "2"]
    collection = DatasetCollection(data, n_way=2, k_shot=1, n_query=1)
    from_collection = search().meta_fit(collection)
    assert from_collection.meta_dataset_names_ == list(data)
    assert from_collection.meta_scores_.shape == (3, 8)
    drawn = MetaSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": randint(1, 10)},
                         n_pool=5, n_candidates=2, cv=3, random_state=0).meta_fit(data)
    assert len(drawn.meta_pool_) == 5 and len(drawn.portfolio_) == 2


@pytest.mark.parametrize(
    "params, data, error, match",
    [
        ({}, {}, ValueError, "at least one dataset"),
        ({}, [], ValueError, "at least one dataset"),
        ({}, "iris", TypeError, "datasets must be"),
        ({}, {"a": np.zeros((3, 2))}, TypeError, "must be an"),
        ({"n_candidates": 0}, None, ValueError, "n_candidates"),
        ({"param_distributions": {"depth": [1, 2]}}, None, ValueError, "depth"),
        ({"param_distributions": {"max_depth": randint(1, 5)}}, None, ValueError, "n_pool"),
        ({"scoring": ["accuracy", "f1"]}, None, ValueError, "scoring"),
        ({}, {"words": (np.full((30, 2), "x"), np.arange(30) % 2)}, ValueError, "could not convert string"),
    ],
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.FitFailedWarning")
def test_bad_input_is_rejected(params, data, error, match):
    with pytest.raises(error, match=match):
        search(**params).meta_fit(datasets(2) if data is None else data)


def test_never_meta_fitted_search_tries_random_candidates():
    X, y = make_classification(n_samples=60, random_state=0)
    with pytest.warns(NotMetaFittedWarning):
        fitted = search(random_state=0).fit(X, y)
    assert len(fitted.cv_results_["params"]) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotMetaFittedWarning)
        search().meta_fit(datasets(2)).fit(X, y)


@settings(max_examples=60, deadline=None)
@given(
    # Scores as accuracies of up to 200 test rows are.
    arrays(np.float64, st.tuples(st.integers(2, 5), st.integers(2, 6)), elements=st.integers(0, 200).map(lambda k: k / 200)),
    arrays(np.float64, st.tuples(st.integers(2, 8), st.integers(2, 6)), elements=st.integers(0, 200).map(lambda k: k / 200)),
)
def test_posterior_lies_between_the_prior_and_the_new_dataset(folds, prior):
    n = min(folds.shape[1], prior.shape[1])
    folds, prior = folds[:, :n], prior[:, :n]
    scores, weight = posterior_scores(folds, prior)
    assert 0 <= weight <= 1
    measured = folds.mean(axis=0) - folds.mean()
    mu = (prior - prior.mean(axis=1, keepdims=True)).mean(axis=0)
    relative = scores - folds.mean()
    np.testing.assert_allclose(relative, mu + weight * (measured - mu), atol=1e-12)
    # How hard a fold or a dataset is (a constant per row) changes nothing but the level.
    shifted, shifted_weight = posterior_scores(folds + np.arange(len(folds))[:, None],
                                               prior - 0.5 * np.arange(len(prior))[:, None])
    np.testing.assert_allclose(shifted - shifted.mean(), scores - scores.mean(), atol=1e-9)
    assert shifted_weight == pytest.approx(weight)


def test_posterior_trusts_whichever_evidence_is_consistent():
    prior = np.array([[0.9, 0.7, 0.8], [0.8, 0.6, 0.7], [0.7, 0.5, 0.6]])  # candidate 0 always best by 0.1
    noisy = np.array([[0.2, 0.9, 0.5], [0.9, 0.3, 0.4], [0.5, 0.6, 0.3]])  # folds disagree; mean favours 1
    agreeing = np.array([[0.5, 0.9, 0.6], [0.5, 0.9, 0.6], [0.5, 0.9, 0.6]])  # folds agree: 1 is best
    scores, weight = posterior_scores(noisy, prior)
    assert weight == 0 and np.argmax(scores) == 0  # the datasets agree exactly: the prior wins
    scores, weight = posterior_scores(agreeing, prior)
    assert weight == 1 and np.argmax(scores) == 1  # the folds agree exactly: the new dataset wins
    noisy_prior = prior + np.array([[0.1, -0.1, 0.0], [-0.1, 0.1, 0.0], [0.0, 0.0, 0.0]])
    _, less_noisy = posterior_scores(noisy, noisy_prior)
    assert 0 < less_noisy < 1
    failed = noisy.copy()
    failed[1, 2] = np.nan
    scores, _ = posterior_scores(failed, prior)
    assert scores[2] == -np.inf and np.isfinite(scores[:2]).all()
    # One meta-training dataset or one fold gives no spread: cross-validation decides.
    assert posterior_scores(noisy, prior[:1])[1] == 1
    assert np.argmax(posterior_scores(noisy[:1], prior)[0]) == np.argmax(noisy[0])


def test_selection_picks_by_posterior_or_by_cross_validation(meta_fitted):
    X, y = make_classification(n_samples=40, n_features=6, flip_y=0.2, random_state=3)
    by_cv = clone(meta_fitted).set_params(selection="cv").fit(X, y)
    assert by_cv.best_index_ == np.argmax(by_cv.cv_results_["mean_test_score"])
    assert "posterior_test_score" not in by_cv.cv_results_
    fitted = clone(meta_fitted).fit(X, y)
    results = fitted.cv_results_
    columns = [meta_fitted.meta_pool_.index(p) for p in meta_fitted.portfolio_]
    folds = np.array([results[f"split{i}_test_score"] for i in range(3)])
    expected, weight = posterior_scores(folds, meta_fitted.meta_scores_[:, columns])
    np.testing.assert_array_equal(results["posterior_test_score"], expected)
    np.testing.assert_array_equal(results["posterior_weight"], weight)
    assert fitted.best_index_ == np.argmax(expected)
    assert fitted.best_params_ == results["params"][fitted.best_index_]
    assert fitted.best_score_ == results["mean_test_score"][fitted.best_index_]
    assert fitted.best_estimator_.get_params()["max_depth"] == fitted.best_params_["max_depth"]
    with pytest.raises(ValueError, match="selection"):
        clone(meta_fitted).set_params(selection="best").fit(X, y)


@pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")
def test_posterior_beats_cross_validation_on_a_tiny_dataset():
    # One noisy problem at every size, one informative feature: deep trees
    # overfit it. Experience comes from 30-row training sets of earlier
    # draws (meta_cv); the new datasets have 30 rows, 3 folds of 10.
    def problem(n, seed):
        return make_classification(n_samples=n, n_features=5, n_informative=1, n_redundant=0,
                                   n_clusters_per_class=1, flip_y=0.3, class_sep=1.5, random_state=seed)

    meta = MetaSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [1, 2, 3, None]}, n_candidates=4,
                        cv=3, meta_cv=ShuffleSplit(5, train_size=30, test_size=200, random_state=0))
    meta.meta_fit({f"d{seed}": problem(400, seed) for seed in range(8)})
    gains, weights = [], []
    for seed in range(100, 140):
        X, y = problem(430, seed)
        X_train, y_train, X_test, y_test = X[:30], y[:30], X[30:], y[30:]
        fitted = clone(meta).fit(X_train, y_train)
        weights.append(fitted.cv_results_["posterior_weight"][0])
        gains.append(fitted.score(X_test, y_test)
                     - clone(meta).set_params(selection="cv").fit(X_train, y_train).score(X_test, y_test))
    gains = np.array(gains)
    assert 0.1 < np.mean(weights) < 0.5  # the folds weigh less than experience, but count
    assert gains.mean() > 0.01 and (gains > 0).sum() > 2 * (gains < 0).sum(), gains


def test_meta_cv_shapes_the_experience_and_cv_the_search():
    data = datasets(2)
    splits = ShuffleSplit(n_splits=2, train_size=20, test_size=15, random_state=0)
    counting = MetaSearchCV(CountingTree(random_state=0), GRID, n_candidates=2, cv=3, meta_cv=splits)
    CountingTree.fits = 0
    counting.meta_fit(data)
    assert CountingTree.fits == 2 * 8 * 2  # datasets x pool x meta_cv's splits
    X, y = data["d0"]
    expected = [cross_val_score(DecisionTreeClassifier(random_state=0).set_params(**params), X, y, cv=splits).mean()
                for params in counting.meta_pool_]
    np.testing.assert_allclose(counting.meta_scores_[0], expected)
    CountingTree.fits = 0
    counting.fit(X, y)
    assert CountingTree.fits == 2 * 3 + 1  # candidates x cv's folds, and the refit
