import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.datasets import load_wine
from sklearn.model_selection import cross_val_score

from skmeta.base import NotMetaFittedWarning
from skmeta.datasets import make_prior_tasks
from skmeta.model_selection import EpisodicSplit
from skmeta.tabular import InContextClassifier
from skmeta.tabular.incontext import DEFAULT_WEIGHTS
from skmeta.utils.estimator_checks import meta_state

NETWORK = dict(module__max_features=16, module__d_model=8, module__n_heads=2, module__n_layers=1,
               module__dim_feedforward=16)
TINY = dict(pretrained=False, verbose=0, random_state=0, **NETWORK)
TASKS = list(make_prior_tasks(n_tasks=24, n_way=(2, 4), k_shot=(1, 3), n_query=3, max_features=20, random_state=0))
X_WINE, Y_WINE = load_wine(return_X_y=True)

# The shipped weights, loaded once (each fit of a clone would otherwise load them).
DEFAULT = InContextClassifier(random_state=0).fit(X_WINE[:3], Y_WINE[:3])






def _episode(n_way, k_shot, n_features, n_query=5, random_state=0):
    rng = np.random.RandomState(random_state)
    means = rng.randn(n_way, n_features) * 2
    y = np.repeat(np.arange(n_way), k_shot + n_query)
    X = (means[y] + rng.randn(len(y), n_features)) * np.exp(rng.uniform(-2, 2, n_features))
    support = np.concatenate([np.flatnonzero(y == c)[:k_shot] for c in range(n_way)])
    query = np.setdiff1d(np.arange(len(y)), support)
    return X[support], y[support], X[query], y[query]


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 6), st.integers(1, 4), st.integers(1, 30), st.integers(0, 10**6))
def test_support_row_order_does_not_change_predictions(n_way, k_shot, n_features, seed):
    X, y, X_query, _ = _episode(n_way, k_shot, n_features, random_state=seed)
    order = np.random.RandomState(seed).permutation(len(y))
    a = DEFAULT.fit(X, y).predict_proba(X_query)
    b = DEFAULT.fit(X[order], y[order]).predict_proba(X_query)
    np.testing.assert_allclose(b, a, atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 6), st.integers(1, 3), st.integers(0, 10**6))
def test_relabelling_classes_permutes_probabilities(n_way, k_shot, seed):
    X, y, X_query, _ = _episode(n_way, k_shot, 7, random_state=seed)
    names = np.array([f"class {i}" for i in np.random.RandomState(seed).permutation(10)[:n_way]])
    a = DEFAULT.fit(X, y).predict_proba(X_query)
    b = DEFAULT.fit(X, names[y]).predict_proba(X_query)
    # Column j of b is class classes_[j] = names[code]: reorder b by code.
    codes = np.searchsorted(DEFAULT.classes_, names)
    np.testing.assert_allclose(b[:, codes], a, atol=1e-5)


def test_each_query_is_predicted_on_its_own():
    X, y, X_query, _ = _episode(4, 3, 9)
    together = DEFAULT.fit(X, y).predict_proba(X_query)
    alone = np.vstack([DEFAULT.predict_proba(X_query[i:i + 1]) for i in range(len(X_query))])
    np.testing.assert_allclose(alone, together, atol=1e-6)


def test_invariant_to_scale_and_offset_of_features():
    X, y, X_query, _ = _episode(3, 2, 6)
    rng = np.random.RandomState(1)
    scale, shift = np.exp(rng.uniform(-3, 3, 6)), rng.uniform(-100, 100, 6)
    a = DEFAULT.fit(X, y).predict_proba(X_query)
    b = DEFAULT.fit(X * scale + shift, y).predict_proba(X_query * scale + shift)
    np.testing.assert_allclose(b, a, atol=1e-3)


@pytest.mark.parametrize("n_features", [1, 100, 150])
def test_any_number_of_features(n_features):
    X, y, X_query, _ = _episode(3, 2, n_features, random_state=n_features)
    proba = DEFAULT.fit(X, y).predict_proba(X_query)
    assert proba.shape == (len(X_query), 3) and DEFAULT.n_features_in_ == n_features
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    # Beyond max_features every ensemble member reads its own subset.
    columns = DEFAULT.support_state_["norm"]["columns"]
    assert columns.shape == (DEFAULT.n_estimators, min(n_features, 100))
    assert len({tuple(c.tolist()) for c in columns}) == (1 if n_features == 1 else DEFAULT.n_estimators)


def test_constant_column_changes_nothing():
    X, y, X_query, _ = _episode(3, 2, 5)
    learner = clone(DEFAULT).set_params(n_estimators=1)
    a = learner.fit(X, y).predict_proba(X_query)
    b = learner.fit(np.hstack([X, np.full((len(X), 1), 3.0)]), y).predict_proba(
        np.hstack([X_query, np.full((len(X_query), 1), -8.0)]))
    np.testing.assert_allclose(b, a, atol=1e-6)


def test_missing_values_are_accepted():
    X, y, X_query, y_query = _episode(3, 4, 6)
    rng = np.random.RandomState(0)
    X, X_query = X.copy(), X_query.copy()
    X[rng.rand(*X.shape) < 0.2] = np.nan
    X_query[rng.rand(*X_query.shape) < 0.2] = np.nan
    X[:, 2] = np.nan  # missing throughout the support set
    proba = DEFAULT.fit(X, y).predict_proba(X_query)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert DEFAULT.score(X_query, y_query) > 1 / 3


def test_more_than_ten_classes():
    X, y, X_query, _ = _episode(13, 2, 8)
    assert DEFAULT.fit(X, y).predict_proba(X_query).shape == (len(X_query), 13)


def test_default_works_out_of_the_box_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learner = InContextClassifier(random_state=0).fit(X_WINE[::10], Y_WINE[::10])
    saved = torch.load(DEFAULT_WEIGHTS, weights_only=True)
    for key, value in learner.module_.state_dict().items():
        assert torch.equal(value, saved["state_dict"][key])
    assert DEFAULT_WEIGHTS.stat().st_size <= 2_000_000


def test_shipped_weights_beat_an_untrained_network():
    cv = EpisodicSplit(n_way=3, k_shot=5, n_query=10, n_episodes=20, random_state=0)
    shipped = cross_val_score(DEFAULT, X_WINE, Y_WINE, cv=cv).mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotMetaFittedWarning)
        untrained = cross_val_score(InContextClassifier(pretrained=False, random_state=0), X_WINE, Y_WINE,
                                    cv=cv).mean()
    assert shipped > untrained + 0.08, (shipped, untrained)


def test_clone_keeps_meta_trained_weights():
    learner = InContextClassifier(max_epochs=1, **TINY).meta_fit(TASKS[:8])
    copy = clone(learner)
    for key, value in meta_state(learner).items():
        assert torch.equal(meta_state(copy)[key], value)
    assert copy.module_ is not learner.module_
    for key, value in clone(DEFAULT).module_.state_dict().items():
        assert torch.equal(value, DEFAULT.module_.state_dict()[key])


def test_meta_fit_continues_from_the_shipped_weights():
    shipped = torch.load(DEFAULT_WEIGHTS, weights_only=True)["state_dict"]
    frozen = InContextClassifier(lr=0.0, max_epochs=1, verbose=0, random_state=0).meta_fit(TASKS[:8])
    for key, value in frozen.module_.state_dict().items():
        assert torch.equal(value, shipped[key]), key
    tuned = InContextClassifier(lr=1e-3, max_epochs=1, verbose=0, random_state=0).meta_fit(TASKS[:8])
    moved = [float((value - shipped[key]).abs().max()) for key, value in tuned.module_.state_dict().items()]
    assert 0 < max(moved) < 0.05


def test_pretrained_path_round_trip(tmp_path):
    learner = InContextClassifier(max_epochs=1, **TINY).meta_fit(TASKS[:8])
    config = {key.removeprefix("module__"): value for key, value in NETWORK.items()}
    path = tmp_path / "weights.pt"
    torch.save({"config": config, "state_dict": learner.module_.state_dict()}, path)
    loaded = InContextClassifier(pretrained=path, random_state=0).fit(X_WINE[::10], Y_WINE[::10])
    np.testing.assert_allclose(loaded.predict_proba(X_WINE), learner.fit(X_WINE[::10], Y_WINE[::10]).predict_proba(X_WINE),
                               atol=1e-6)


@pytest.mark.parametrize(
    "learner, call, error, message",
    [
        (InContextClassifier(), lambda l: l.fit(np.array([[1.0, np.inf], [0.0, 1.0]]), [0, 1]), ValueError, "infinity"),
        (InContextClassifier(), lambda l: l.fit(X_WINE[:2], [0.0, np.nan]), ValueError, "y contains NaN"),
        (InContextClassifier(n_estimators=0), lambda l: l.fit(X_WINE[:4], Y_WINE[:4]), ValueError, "n_estimators"),
        (InContextClassifier(module__d_model=32), lambda l: l.fit(X_WINE[:4], Y_WINE[:4]), ValueError, "pretrained=False"),
        (InContextClassifier(pretrained="no/such/file.pt"), lambda l: l.fit(X_WINE[:4], Y_WINE[:4]), FileNotFoundError,
         "no InContextClassifier weights"),
        (InContextClassifier(pretrained=3), lambda l: l.fit(X_WINE[:4], Y_WINE[:4]), TypeError, "pretrained"),
    ],
    ids=["inf", "nan-label", "n_estimators", "module-clash", "missing-file", "pretrained-type"],
)
def test_bad_input_raises(learner, call, error, message):
    with pytest.raises(error, match=message):
        call(learner)


def test_prediction_rejects_infinity():
    DEFAULT.fit(X_WINE[::10], Y_WINE[::10])
    X = X_WINE[:2].copy()
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        DEFAULT.predict(X)


def test_training_script_writes_loadable_weights(tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import train_incontext_default

    out = tmp_path / "weights.pt"
    monkeypatch.setattr(train_incontext_default, "NETWORK", {k.removeprefix("module__"): v for k, v in NETWORK.items()})
    train_incontext_default.main(["--minutes", "0.02", "--out", str(out), "--threads", str(torch.get_num_threads())])
    saved = torch.load(out, weights_only=True)
    assert saved["training"]["meta_updates"] >= 1 and saved["training"]["device"] == "cpu"
    learner = InContextClassifier(pretrained=out, random_state=0).fit(X_WINE[::10], Y_WINE[::10])
    assert learner.predict_proba(X_WINE[:5]).shape == (5, 3)
