import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from conftest import subspace_tasks
from skmeta import MatchingNetworkClassifier
from skmeta.base import NotMetaFittedWarning
from skmeta.model_selection import EpisodicSplit
from skmeta.utils.estimator_checks import meta_state

TINY = dict(module__hidden_sizes=(16,), module__out_features=8, verbose=0, random_state=0)


TASKS, X_NEW, Y_NEW = subspace_tasks()
LEARNER = dict(module__hidden_sizes=(32,), module__out_features=16, max_epochs=4, lr=3e-3, verbose=0, random_state=0)


@pytest.fixture(scope="module")
def meta_fitted():
    return MatchingNetworkClassifier(**LEARNER).meta_fit(TASKS)


@pytest.fixture(scope="module")
def meta_fitted_paper():
    return MatchingNetworkClassifier(scale=1.0, learn_scale=False, **LEARNER).meta_fit(TASKS)


@pytest.fixture(scope="module")
def meta_fitted_fce():
    return MatchingNetworkClassifier(fce=True, fce_steps=2, **LEARNER).meta_fit(TASKS)


def test_one_shot_without_fce_is_cosine_nearest_neighbour(meta_fitted):
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=10, n_episodes=20, random_state=0)
    for support, query in cv.split(X_NEW, Y_NEW):
        knn = KNeighborsClassifier(n_neighbors=1, metric="cosine")
        knn.fit(meta_fitted.transform(X_NEW[support]), Y_NEW[support])
        expected = knn.predict(meta_fitted.transform(X_NEW[query]))
        got = meta_fitted.fit(X_NEW[support], Y_NEW[support]).predict(X_NEW[query])
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("paper", [False, True])
def test_predict_proba_is_the_attention_mass_on_each_class(meta_fitted, meta_fitted_paper, paper):
    learner = meta_fitted_paper if paper else meta_fitted
    scale = 1.0 if paper else float(learner.scale_.log_scale.detach().exp())
    support, query = next(EpisodicSplit(n_way=4, k_shot=3, n_query=5, n_episodes=1, random_state=1).split(X_NEW, Y_NEW))
    z_support, z_query = learner.transform(X_NEW[support]), learner.transform(X_NEW[query])
    cosine = scale * (z_query / np.linalg.norm(z_query, axis=1, keepdims=True)) @ (
        z_support / np.linalg.norm(z_support, axis=1, keepdims=True)
    ).T
    attention = np.exp(cosine) / np.exp(cosine).sum(1, keepdims=True)
    classes = np.unique(Y_NEW[support])
    expected = np.stack([attention[:, Y_NEW[support] == c].sum(1) for c in classes], axis=1)
    proba = learner.fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[query])
    np.testing.assert_allclose(proba, expected, rtol=1e-5, atol=1e-6)


def test_learned_scale_is_meta_state_and_a_fixed_one_stays(meta_fitted, meta_fitted_paper):
    learned = meta_state(meta_fitted)["scale.log_scale"]
    assert float(learned) != pytest.approx(np.log(10.0), abs=1e-3)  # meta_fit moved it from the default
    assert torch.equal(meta_state(clone(meta_fitted))["scale.log_scale"], learned)
    assert float(meta_state(meta_fitted_paper)["scale.log_scale"]) == 0.0  # fixed at the paper's 1
    assert not any(p.requires_grad for p in meta_fitted_paper.scale_.parameters())


def test_scale_lets_the_attention_sharpen():
    # At scale 1 a 5-way 1-shot query puts at most e / (e + 4 / e) = 65 % on
    # its class; a scale of 10 lets meta-training go well past it.
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=10, n_episodes=20, random_state=6)
    top = {}
    for scale in (1.0, 10.0):
        learner = MatchingNetworkClassifier(scale=scale, learn_scale=False, **LEARNER).meta_fit(TASKS)
        top[scale] = np.mean([learner.fit(X_NEW[s], Y_NEW[s]).predict_proba(X_NEW[q]).max(1).mean()
                              for s, q in cv.split(X_NEW, Y_NEW)])
    assert top[1.0] <= np.e / (np.e + 4 / np.e) + 1e-6 and top[10.0] > 0.8, top


@pytest.mark.parametrize("fce", [False, True])
def test_support_embeddings_depend_on_the_other_examples_only_with_fce(meta_fitted, meta_fitted_fce, fce):
    learner = meta_fitted_fce if fce else meta_fitted
    support, _ = next(EpisodicSplit(n_way=5, k_shot=1, n_query=1, n_episodes=1, random_state=2).split(X_NEW, Y_NEW))
    X_support, y_support = X_NEW[support], Y_NEW[support]
    first = learner.fit(X_support, y_support).support_embeddings_[0].clone()
    X_other = X_support.copy()
    X_other[-1] = X_NEW[0] if not np.array_equal(X_NEW[0], X_support[-1]) else X_NEW[1]
    changed = learner.fit(X_other, y_support).support_embeddings_[0]
    assert torch.equal(first, changed) is not fce


def test_fce_meta_fit_beats_untrained_initialisation(meta_fitted_fce):
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=10, n_episodes=40, random_state=3)
    meta = cross_val_score(meta_fitted_fce, X_NEW, Y_NEW, cv=cv).mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotMetaFittedWarning)
        untrained = MatchingNetworkClassifier(fce=True, fce_steps=2, **LEARNER)
        untrained = cross_val_score(untrained, X_NEW, Y_NEW, cv=cv).mean()
    assert meta > untrained + 0.3, (meta, untrained)


def test_fce_modules_are_meta_state_and_follow_meta_fit(meta_fitted, meta_fitted_fce):
    assert any(key.startswith("context_embedding.") for key in meta_state(meta_fitted_fce))
    assert not any(key.startswith("context_embedding.") for key in meta_state(meta_fitted))
    # Turning FCE on after meta_fit warns and changes nothing until the next meta_fit.
    learner = clone(meta_fitted)
    support, query = next(EpisodicSplit(n_way=5, k_shot=1, n_query=5, n_episodes=1, random_state=4).split(X_NEW, Y_NEW))
    before = learner.fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[query])
    learner.set_params(fce=True)
    with pytest.warns(UserWarning, match="fce changed after meta_fit"):
        after = learner.fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[query])
    np.testing.assert_array_equal(after, before)
    learner.set_params(max_epochs=1).meta_fit(TASKS[:5])
    assert "context_embedding_" in vars(learner)
    learner.set_params(fce=False).meta_fit(TASKS[:5])
    assert "context_embedding_" not in vars(learner) and "context_embedding" not in learner._modules


def test_transform_feeds_a_scikit_learn_classifier(meta_fitted_fce):
    Z = meta_fitted_fce.transform(X_NEW[:7])
    assert Z.shape == (7, 16) and Z.dtype == np.float32
    cv = EpisodicSplit(n_way=5, k_shot=2, n_query=10, n_episodes=10, random_state=5)
    pipe = make_pipeline(meta_fitted_fce, LogisticRegression(max_iter=500))
    assert cross_val_score(pipe, X_NEW, Y_NEW, cv=cv).mean() > 0.5


@pytest.mark.parametrize(
    "params, error, message",
    [
        (dict(fce="yes"), TypeError, "fce must be True or False"),
        (dict(fce=True, fce_steps=0), ValueError, "fce_steps must be a positive integer"),
        (dict(scale=0.0), ValueError, "scale must be a finite number > 0"),
        (dict(scale=-2.0), ValueError, "scale must be a finite number > 0"),
        (dict(scale=float("nan")), ValueError, "scale must be a finite number > 0"),
        (dict(scale=float("inf")), ValueError, "scale must be a finite number > 0"),
        (dict(scale="10"), ValueError, "scale must be a finite number > 0"),
        (dict(scale=True), ValueError, "scale must be a finite number > 0"),
        (dict(learn_scale="yes"), TypeError, "learn_scale must be True or False"),
    ],
    ids=["fce-not-bool", "fce-steps", "scale-zero", "scale-negative", "scale-nan", "scale-inf", "scale-str",
         "scale-bool", "learn-scale-not-bool"],
)
def test_bad_parameters_raise(params, error, message):
    with pytest.raises(error, match=message):
        MatchingNetworkClassifier(**dict(LEARNER, max_epochs=1), **params).meta_fit(TASKS[:2])
