"""Prediction in chunks (``predict_batch_size``) and never a NaN probability."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from skmeta import ProtoNetClassifier
from skmeta._prediction import predict_in_chunks
from skmeta.base import NotMetaFittedWarning
from skmeta.metric._base import normalize_rows, power_of_two_scale
from skmeta.tabular import FeatureVoteClassifier
from test_threads import LEARNERS, QUERY, SUPPORT, TASKS, _shared_regressor


@pytest.fixture(scope="module", params=sorted(LEARNERS))
def adapted(request):
    return LEARNERS[request.param]().meta_fit(TASKS).fit(*SUPPORT)


def test_chunked_prediction_equals_unchunked(adapted):
    whole = clone(adapted).set_params(predict_batch_size=len(QUERY)).fit(*SUPPORT)
    for size in (1, 4, 7):
        chunked = clone(adapted).set_params(predict_batch_size=size).fit(*SUPPORT)
        np.testing.assert_allclose(chunked.predict_proba(QUERY), whole.predict_proba(QUERY), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(chunked.predict(QUERY), whole.predict(QUERY))
        if hasattr(whole, "transform"):
            np.testing.assert_allclose(chunked.transform(QUERY), whole.transform(QUERY), rtol=1e-5, atol=1e-6)


def test_chunked_regression_equals_unchunked():
    learner, X = _shared_regressor()
    whole = learner.predict(X)
    np.testing.assert_allclose(learner.set_params(predict_batch_size=3).predict(X), whole, rtol=1e-5, atol=1e-6)


def test_predict_batch_size_is_not_a_meta_training_parameter(adapted):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fit warns on changed meta-training parameters
        adapted.set_params(predict_batch_size=3).fit(*SUPPORT)


@pytest.mark.parametrize("size, error", [(0, ValueError), (-1, ValueError), (2.5, TypeError), ("8", TypeError)])
def test_bad_predict_batch_size(adapted, size, error):
    with pytest.raises(error, match="predict_batch_size"):
        clone(adapted).set_params(predict_batch_size=size).fit(*SUPPORT).predict(QUERY)


def test_predict_in_chunks_covers_every_row():
    X = torch.arange(10.0).reshape(5, 2)
    for size in (1, 2, 5, 6):
        assert torch.equal(predict_in_chunks(lambda rows: rows * 3, X, size), X * 3)


# ----------------------------------------------------------------------
# overflow
# ----------------------------------------------------------------------
def _identity_protonet(distance):
    return ProtoNetClassifier(module=torch.nn.Identity, distance=distance, random_state=0)


@pytest.mark.parametrize("distance", ["sqeuclidean", "euclidean", "cosine"])
@given(magnitude=st.floats(1e15, 1e37), seed=st.integers(0, 2**16))
@settings(max_examples=20, deadline=None)
def test_protonet_huge_values_give_finite_correct_probabilities(distance, magnitude, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, 4))
    y = np.repeat([0, 1, 2], 2)
    X = centres[y] + 0.01 * rng.standard_normal((6, 4))
    X_query = centres + 0.01 * rng.standard_normal((3, 4))
    learner = _identity_protonet(distance)
    with pytest.warns(NotMetaFittedWarning):
        learner.fit(X * magnitude, y)
    proba = learner.predict_proba(X_query * magnitude)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-6)
    # Distances scale with the data: the rule at 1e30 is the rule at 1.
    with pytest.warns(NotMetaFittedWarning):
        expected = learner.fit(X, y).predict(X_query)
    with pytest.warns(NotMetaFittedWarning):
        learner.fit(X * magnitude, y)
    np.testing.assert_array_equal(learner.predict(X_query * magnitude), expected)


def test_protonet_1e30_regression():
    # The reproducer: all-NaN probabilities and classes_[0] for every row.
    X = np.array([[0.0, 0.0], [1.0, 1.0]]) * 1e30
    learner = _identity_protonet("sqeuclidean")
    with pytest.warns(NotMetaFittedWarning):
        learner.fit(X, [0, 1])
    np.testing.assert_allclose(learner.predict_proba(X), np.eye(2))
    np.testing.assert_array_equal(learner.predict(X[::-1]), [1, 0])


def test_overflowing_embedding_is_a_clear_error():
    # A backbone that overflows float32 on large inputs: inf embeddings.
    learner = ProtoNetClassifier(module=torch.nn.Linear, module__in_features=2, module__out_features=2,
                                 random_state=0)
    with pytest.warns(NotMetaFittedWarning):
        learner.fit(np.array([[0.0, 0.0], [1.0, 1.0]]), [0, 1])
    with torch.no_grad():
        learner.module_.weight.fill_(1e30)
    with pytest.raises(ValueError, match="non-finite embeddings.*overflow"):
        learner.predict_proba(np.array([[1e20, 1e20]]))


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_huge_queries_never_give_nan(name):
    learner = LEARNERS[name]().meta_fit(TASKS).fit(*SUPPORT)
    try:
        proba = learner.predict_proba(QUERY * 1e30)
    except ValueError as error:
        assert "non-finite" in str(error) and "Rescale X" in str(error)
    else:
        assert np.isfinite(proba).all()
        np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)


def test_normalize_rows_and_scale():
    z = torch.tensor([[3e30, 4e30], [3.0, 4.0]])
    np.testing.assert_allclose(normalize_rows(z).numpy(), [[0.6, 0.8], [0.6, 0.8]], rtol=1e-6)
    assert power_of_two_scale(torch.tensor([1e6])) == 1
    scale = power_of_two_scale(torch.tensor([3.4e38]))
    assert torch.isfinite(torch.tensor(3.4e38) / scale) and 3.4e38 / float(scale) < 2.0 ** 32


# ----------------------------------------------------------------------
# FeatureVote on N-D examples
# ----------------------------------------------------------------------
def test_featurevote_flattens_nd_examples():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 2, 3))
    y = np.repeat([0, 1, 2], 4)
    learner = FeatureVoteClassifier(module__hidden_size=8, random_state=0)
    with pytest.warns(NotMetaFittedWarning):
        flat = clone(learner).fit(X.reshape(12, -1), y).predict_proba(X.reshape(12, -1))
    with pytest.warns(NotMetaFittedWarning):
        nd = clone(learner).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(nd, flat, rtol=1e-6)
