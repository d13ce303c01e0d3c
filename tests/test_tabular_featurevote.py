import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from conftest import make_relevance_dataset, make_relevance_family
from skmeta.base import NotMetaFittedWarning
from skmeta.datasets import load_tabular
from skmeta.model_selection import EpisodicSplit
from skmeta.tabular import FeatureVoteClassifier, featurevote
from skmeta.utils.estimator_checks import meta_state

TINY = dict(module__hidden_size=8, verbose=0, random_state=0)


def _family(n_tasks=400, random_state=0):
    return make_relevance_family(n_tasks, random_state)[0]


TASKS = _family()
X_NEW, Y_NEW = make_relevance_dataset(11, random_state=99)  # a width never seen in meta-training


@pytest.fixture(scope="module")
def meta_fitted():
    return FeatureVoteClassifier(module__hidden_size=16, max_epochs=3, verbose=0, random_state=0).meta_fit(TASKS)


def test_adapts_to_any_number_of_features_after_meta_fit(meta_fitted):
    before = meta_state(meta_fitted)
    for n_features in (1, 3, 40):
        X, y = make_relevance_dataset(n_features, n_informative=1, random_state=n_features)
        proba = meta_fitted.fit(X[::10], y[::10]).predict_proba(X[1::10])
        assert proba.shape == (len(X[1::10]), 6) and meta_fitted.n_features_in_ == n_features
    for key, value in meta_state(meta_fitted).items():
        assert torch.equal(value, before[key])


def test_meta_fit_beats_untrained_and_scaled_nearest_neighbour_at_five_shots(meta_fitted):
    cv = EpisodicSplit(n_way=5, k_shot=5, n_query=10, n_episodes=30, random_state=1)
    meta = cross_val_score(meta_fitted, X_NEW, Y_NEW, cv=cv).mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotMetaFittedWarning)
        untrained = cross_val_score(FeatureVoteClassifier(module__hidden_size=16, random_state=0),
                                    X_NEW, Y_NEW, cv=cv).mean()
    nearest = cross_val_score(make_pipeline(StandardScaler(), KNeighborsClassifier(1)), X_NEW, Y_NEW, cv=cv).mean()
    assert meta > untrained + 0.2 and meta > nearest + 0.1, (meta, untrained, nearest)


def test_predictions_are_equivariant_to_permuting_features(meta_fitted):
    order = np.random.RandomState(0).permutation(X_NEW.shape[1])
    support, query = next(EpisodicSplit(n_way=4, k_shot=3, n_query=5, random_state=0).split(X_NEW, Y_NEW))
    a = meta_fitted.fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[query])
    relevance = meta_fitted.feature_relevance_
    b = meta_fitted.fit(X_NEW[support][:, order], Y_NEW[support]).predict_proba(X_NEW[query][:, order])
    np.testing.assert_allclose(b, a, atol=1e-5)
    np.testing.assert_allclose(meta_fitted.feature_relevance_, relevance[order], rtol=1e-5)


def test_predictions_are_invariant_to_rescaling_and_shifting_features(meta_fitted):
    rng = np.random.RandomState(1)
    scale, shift = np.exp(rng.uniform(-3, 3, X_NEW.shape[1])), rng.uniform(-100, 100, X_NEW.shape[1])
    X = X_NEW.astype(np.float64)
    support, query = next(EpisodicSplit(n_way=3, k_shot=2, n_query=5, random_state=2).split(X, Y_NEW))
    a = meta_fitted.fit(X[support], Y_NEW[support]).predict_proba(X[query])
    b = meta_fitted.fit(X[support] * scale + shift, Y_NEW[support]).predict_proba(X[query] * scale + shift)
    np.testing.assert_allclose(b, a, atol=1e-3)


def test_constant_feature_gets_no_vote(meta_fitted):
    support, query = next(EpisodicSplit(n_way=3, k_shot=2, n_query=5, random_state=3).split(X_NEW, Y_NEW))
    a = meta_fitted.fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[query])
    constant = np.full((len(X_NEW), 1), 7.0, dtype=np.float32)
    X = np.hstack([X_NEW, constant])
    b = meta_fitted.fit(X[support], Y_NEW[support]).predict_proba(X[query])
    assert meta_fitted.feature_relevance_[-1] == 0
    np.testing.assert_allclose(meta_fitted.feature_relevance_.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(b, a, atol=1e-5)


def test_ridge_head_joins_from_two_shots(meta_fitted):
    one = meta_fitted.fit(X_NEW[[0, 30]], Y_NEW[[0, 30]])
    assert "ridge_coef" not in one.task_state_
    two = meta_fitted.fit(X_NEW[[0, 1, 30, 31]], Y_NEW[[0, 1, 30, 31]])
    assert two.task_state_["ridge_coef"].shape == (X_NEW.shape[1], 2)
    without = clone(meta_fitted)
    without.module_.ridge = False
    assert "ridge_coef" not in without.fit(X_NEW[[0, 1, 30, 31]], Y_NEW[[0, 1, 30, 31]]).task_state_


def test_prediction_in_chunks_equals_one_block(meta_fitted, monkeypatch):
    support, _ = next(EpisodicSplit(n_way=5, k_shot=2, n_query=5, random_state=4).split(X_NEW, Y_NEW))
    meta_fitted.fit(X_NEW[support], Y_NEW[support])
    whole = meta_fitted.predict_proba(X_NEW)
    monkeypatch.setattr(featurevote, "_CHUNK_ELEMENTS", 1000)  # a few rows per chunk
    np.testing.assert_allclose(meta_fitted.predict_proba(X_NEW), whole, rtol=1e-5, atol=1e-8)


def test_one_class_support_predicts_that_class(meta_fitted):
    predicted = meta_fitted.fit(X_NEW[:3], ["only"] * 3).predict(X_NEW[100:110])
    assert list(predicted) == ["only"] * 10


def test_bfloat16_keeps_support_statistics_in_float32(meta_fitted):
    learner = clone(meta_fitted).set_params(precision="bfloat16")
    # Large offsets: class means in bfloat16 (8-bit mantissa) would merge.
    X = X_NEW.astype(np.float64) + 1e4
    support, query = next(EpisodicSplit(n_way=3, k_shot=2, n_query=5, random_state=5).split(X, Y_NEW))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # precision is read at every stage: no warning
        learner.fit(X[support], Y_NEW[support])
    assert learner.task_state_["means"].dtype == torch.float32
    expected = clone(meta_fitted).fit(X[support], Y_NEW[support]).predict_proba(X[query])
    np.testing.assert_allclose(learner.predict_proba(X[query]), expected, atol=0.05)


def test_meta_batches_mix_widths_and_record_history():
    learner = FeatureVoteClassifier(max_epochs=2, batch_size=8, **TINY).meta_fit(TASKS[:40], val_tasks=TASKS[40:48])
    assert len({t.X_support.shape[1] for t in TASKS[:8]}) > 1
    assert len(learner.history) == 2
    assert 0 <= learner.history[-1, "train_acc"] <= 1 and 0 <= learner.history[-1, "valid_acc"] <= 1


def test_nominal_dataset_through_a_per_task_encoder(meta_fitted, tabular_path):
    crx = load_tabular("crx", data_home=tabular_path.parent)
    nominal = crx.categorical_features
    pipe = make_pipeline(
        ColumnTransformer([("nominal", OneHotEncoder(handle_unknown="ignore", sparse_output=False), nominal)],
                          remainder="passthrough"),
        meta_fitted,
    )
    cv = EpisodicSplit(n_way=2, k_shot=5, n_query=15, n_episodes=10, random_state=0)
    assert cross_val_score(pipe, crx.data, crx.target, cv=cv).mean() > 0.6


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda l: l.fit(np.full((4, 3), np.nan), [0, 0, 1, 1]), "NaN"),
        (lambda l: l.fit(X_NEW[:10], Y_NEW[:9]), "inconsistent numbers of samples"),
        (lambda l: clone(l).predict(X_NEW[:3]), "not fitted"),
        (lambda l: l.fit(X_NEW[:10], Y_NEW[:10]).predict(X_NEW[:3, :5]), "features"),
        (lambda l: l.fit(X_NEW[:10], Y_NEW[:10]).score(X_NEW[:5], Y_NEW[:5] + 100), "absent from the support set"),
    ],
    ids=["nan", "length", "unfitted", "query-width", "unseen-query-label"],
)
def test_bad_input_raises_and_keeps_meta_state(meta_fitted, call, message):
    before = meta_state(meta_fitted)
    with pytest.raises((ValueError, TypeError), match=message):
        call(meta_fitted)
    for key, value in meta_state(meta_fitted).items():
        assert torch.equal(value, before[key])
