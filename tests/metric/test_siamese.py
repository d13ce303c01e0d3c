import warnings

import numpy as np
import pytest
import torch
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from conftest import subspace_tasks
from skmeta import SiameseNetworkClassifier
from skmeta.base import NotMetaFittedWarning
from skmeta.model_selection import EpisodicSplit
from skmeta.utils.estimator_checks import meta_state

TINY = dict(module__hidden_sizes=(16,), module__out_features=8, verbose=0, random_state=0)


TASKS, X_NEW, Y_NEW = subspace_tasks()
LEARNER = dict(module__hidden_sizes=(32,), module__out_features=16, max_epochs=4, lr=3e-3, verbose=0, random_state=0)


@pytest.fixture(scope="module")
def meta_fitted():
    return SiameseNetworkClassifier(**LEARNER).meta_fit(TASKS)


@pytest.fixture(scope="module")
def meta_fitted_pairs():
    """Koch et al.'s training: balanced binary cross-entropy on pairs."""
    return SiameseNetworkClassifier(criterion=torch.nn.BCEWithLogitsLoss, **LEARNER).meta_fit(TASKS)


def _similarity(learner, X_a, X_b):
    """p(same) of every row of X_a with every row of X_b, by hand from
    transform and the head's weights: sigmoid(alpha . |h1 - h2| + b)."""
    z_a, z_b = learner.transform(X_a), learner.transform(X_b)
    alpha = learner.similarity_.weight.detach().numpy().ravel()
    bias = learner.similarity_.bias.detach().numpy()[0]
    logits = np.abs(z_a[:, None, :] - z_b[None, :, :]) @ alpha + bias
    return 1 / (1 + np.exp(-logits))


def test_predict_proba_is_the_normalised_similarity_of_the_most_similar_example(meta_fitted):
    support, query = next(EpisodicSplit(n_way=4, k_shot=3, n_query=5, n_episodes=1, random_state=0).split(X_NEW, Y_NEW))
    similarity = _similarity(meta_fitted, X_NEW[query], X_NEW[support])
    classes = np.unique(Y_NEW[support])
    best = np.stack([similarity[:, Y_NEW[support] == c].max(1) for c in classes], axis=1)
    learner = meta_fitted.fit(X_NEW[support], Y_NEW[support])
    np.testing.assert_allclose(learner.predict_proba(X_NEW[query]), best / best.sum(1, keepdims=True), rtol=1e-5)
    np.testing.assert_array_equal(learner.predict(X_NEW[query]), classes[best.argmax(1)])


def test_pair_training_separates_same_from_different_pairs_of_new_classes(meta_fitted_pairs):
    # Koch et al.'s objective makes the similarity a calibrated p(same); the
    # default, episodic one only needs it to rank a query's classes.
    learner = meta_fitted_pairs
    rng = np.random.RandomState(0)
    rows = rng.choice(len(X_NEW), 200, replace=False)
    same = Y_NEW[rows][:, None] == Y_NEW[rows][None, :]
    off_diagonal = ~np.eye(len(rows), dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotMetaFittedWarning)
        untrained = SiameseNetworkClassifier(**LEARNER).fit(X_NEW[:10], Y_NEW[:10])
    gaps = []
    for net in (untrained, learner):
        similarity = _similarity(net, X_NEW[rows], X_NEW[rows])
        gaps.append(similarity[same & off_diagonal].mean() - similarity[~same].mean())
    assert gaps[1] > 0.3 and gaps[1] > gaps[0] + 0.3, gaps


def test_pair_loss_is_balanced_binary_cross_entropy_over_all_pairs(meta_fitted_pairs):
    task = [meta_fitted_pairs._encode_task(TASKS[0])]
    loss, _ = meta_fitted_pairs.meta_loss(task, training=False)
    X = np.concatenate([TASKS[0].X_support.numpy(), TASKS[0].X_query.numpy()])
    y = np.concatenate([TASKS[0].y_support.numpy(), TASKS[0].y_query.numpy()])
    similarity = _similarity(meta_fitted_pairs, X, X)
    upper = np.triu(np.ones_like(similarity, dtype=bool), k=1)
    same = (y[:, None] == y[None, :]) & upper
    different = (y[:, None] != y[None, :]) & upper
    expected = 0.5 * (-np.log(similarity[same]).mean() - np.log(1 - similarity[different]).mean())
    assert float(loss) == pytest.approx(expected, rel=1e-4)


def test_pipeline_with_nearest_neighbour_on_the_learned_embedding(meta_fitted):
    before = meta_state(meta_fitted)
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=10, n_episodes=30, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotMetaFittedWarning)
        embedded = cross_val_score(make_pipeline(meta_fitted, KNeighborsClassifier(1)), X_NEW, Y_NEW, cv=cv)
    raw = cross_val_score(KNeighborsClassifier(1), X_NEW, Y_NEW, cv=cv)
    assert embedded.mean() > raw.mean() + 0.2, (embedded.mean(), raw.mean())
    for key, value in meta_state(meta_fitted).items():
        assert torch.equal(value, before[key])


@pytest.mark.parametrize("pairs", [False, True])
def test_meta_fit_beats_untrained_initialisation(meta_fitted, meta_fitted_pairs, pairs):
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=10, n_episodes=40, random_state=2)
    meta = cross_val_score(meta_fitted_pairs if pairs else meta_fitted, X_NEW, Y_NEW, cv=cv).mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotMetaFittedWarning)
        untrained = cross_val_score(SiameseNetworkClassifier(**LEARNER), X_NEW, Y_NEW, cv=cv).mean()
    assert meta > untrained + 0.3, (meta, untrained)


def test_similarity_head_is_meta_state(meta_fitted):
    assert {"similarity.weight", "similarity.bias"} <= set(meta_state(meta_fitted))
    assert meta_fitted.similarity_.in_features == 16


def test_default_loss_is_the_cross_entropy_of_the_episode_classification(meta_fitted):
    # The query labels' cross-entropy over the classes' log similarities of
    # their most similar support example: the rule predict applies.
    task = TASKS[0]
    loss, _ = meta_fitted.meta_loss([meta_fitted._encode_task(task)], training=False)
    similarity = _similarity(meta_fitted, task.X_query.numpy(), task.X_support.numpy())
    y_support, y_query = task.y_support.numpy(), task.y_query.numpy()
    log_best = np.log(np.stack([similarity[:, y_support == c].max(1) for c in range(task.n_way)], axis=1))
    log_proba = log_best - np.log(np.exp(log_best).sum(1, keepdims=True))
    assert float(loss) == pytest.approx(-log_proba[np.arange(len(y_query)), y_query].mean(), rel=1e-4)
