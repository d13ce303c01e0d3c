import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neighbors import NearestCentroid

from conftest import make_subspace_classes
from skmeta import EpisodeSampler, PretrainedClassifier, Task
from skmeta.base import NotMetaFittedWarning
from skmeta.model_selection import EpisodicSplit
from skmeta.tasks import rotate_classes
from skmeta.utils.estimator_checks import meta_state

TINY = dict(module__hidden_sizes=(16,), module__out_features=8, verbose=0, random_state=0)


X_ALL, Y_ALL = make_subspace_classes()
TRAIN = Y_ALL < 40
X_NEW, Y_NEW = X_ALL[~TRAIN], Y_ALL[~TRAIN]
TASKS = list(EpisodeSampler(X_ALL[TRAIN], Y_ALL[TRAIN], n_way=5, k_shot=2, n_query=5, n_tasks=60, random_state=0))
LEARNER = dict(module__hidden_sizes=(32,), module__out_features=16, max_epochs=10, lr=3e-3, verbose=0, random_state=0)


@pytest.fixture(scope="module")
def pretrained():
    """Pre-trained on the whole pool of the sampler (800 examples, 40 classes)."""
    sampler = EpisodeSampler(X_ALL[TRAIN], Y_ALL[TRAIN], n_way=5, k_shot=2, n_query=5, n_tasks=10, random_state=0)
    return PretrainedClassifier(**LEARNER).meta_fit(sampler)


def test_pretraining_is_ordinary_classification_over_all_pooled_classes(pretrained):
    assert pretrained.meta_n_classes_ == 40
    assert pretrained.head_.linear.out_features == 40
    # One epoch is one pass over the 800 pooled examples in mini-batches of 64.
    assert len(pretrained.history[-1, "batches"]) == math.ceil(800 / 64)
    assert pretrained.history[-1, "train_acc"] > pretrained.history[0, "train_acc"] + 0.2


def test_task_lists_are_pooled_under_their_global_labels():
    learner = PretrainedClassifier(**dict(LEARNER, max_epochs=1)).meta_fit(TASKS)
    assert learner.meta_n_classes_ == len(np.unique(np.concatenate([task.classes for task in TASKS])))
    # Tasks without `classes` are labelled by their own labels.
    rng = np.random.RandomState(0)
    tasks = [Task(rng.randn(4, 5), ["a", "b", "a", "b"], rng.randn(2, 5), ["c", "a"]) for _ in range(3)]
    assert PretrainedClassifier(**dict(LEARNER, max_epochs=1)).meta_fit(tasks).meta_n_classes_ == 3


def test_a_sampler_keeps_rotated_classes_apart_where_its_episodes_cannot():
    X, y = load_digits(return_X_y=True)
    sampler = EpisodeSampler(X / 16, y, n_way=5, k_shot=1, n_query=1, n_tasks=40,
                             augment=rotate_classes(image_shape=(8, 8)), random_state=0)
    learner = PretrainedClassifier(**dict(LEARNER, max_epochs=1))
    assert learner.meta_fit(sampler).meta_n_classes_ == 40
    # Task.classes names a rotated class after the class it was made from.
    assert learner.meta_fit(list(sampler)).meta_n_classes_ == 10


def test_centroid_is_simpleshot_nearest_centroid_on_centred_normalised_features(pretrained):
    raw = clone(pretrained).set_params(normalize=None)
    mean = raw.transform(X_ALL[TRAIN]).mean(0)
    np.testing.assert_allclose(pretrained.head_.feature_mean.numpy(), mean, rtol=1e-4, atol=1e-5)

    def cl2n(X):
        z = raw.transform(X) - mean
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    np.testing.assert_allclose(pretrained.transform(X_NEW[:20]), cl2n(X_NEW[:20]), rtol=1e-4, atol=1e-5)
    cv = EpisodicSplit(n_way=5, k_shot=3, n_query=10, n_episodes=10, random_state=0)
    for support, query in cv.split(X_NEW, Y_NEW):
        expected = NearestCentroid().fit(cl2n(X_NEW[support]), Y_NEW[support]).predict(cl2n(X_NEW[query]))
        np.testing.assert_array_equal(pretrained.fit(X_NEW[support], Y_NEW[support]).predict(X_NEW[query]), expected)


def test_logistic_is_logistic_regression_on_the_features(pretrained):
    learner = clone(pretrained).set_params(classifier="logistic", C=3.0)
    cv = EpisodicSplit(n_way=5, k_shot=3, n_query=10, n_episodes=5, random_state=1)
    for support, query in cv.split(X_NEW, Y_NEW):
        reference = LogisticRegression(C=3.0, max_iter=1000).fit(learner.transform(X_NEW[support]), Y_NEW[support])
        expected = reference.predict_proba(learner.transform(X_NEW[query]))
        got = learner.fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[query])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    binary = Y_NEW < 42
    support, query = next(EpisodicSplit(n_way=2, k_shot=3, n_query=5, n_episodes=1, random_state=2).split(X_NEW[binary], Y_NEW[binary]))
    Xb, yb = X_NEW[binary], Y_NEW[binary]
    reference = LogisticRegression(C=3.0, max_iter=1000).fit(learner.transform(Xb[support]), yb[support])
    np.testing.assert_allclose(
        learner.fit(Xb[support], yb[support]).predict_proba(Xb[query]),
        reference.predict_proba(learner.transform(Xb[query])), rtol=1e-4, atol=1e-6,
    )


def test_one_pretraining_serves_every_adaptation_rule_without_retraining(pretrained):
    before = meta_state(pretrained)
    epochs = len(pretrained.history)
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=10, n_episodes=4, random_state=3)
    search = GridSearchCV(
        pretrained, {"classifier": ["centroid", "logistic"], "normalize": ["cl2n", "l2n", None]}, cv=cv, refit=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither NotMetaFittedWarning nor "changed after meta_fit"
        search.fit(X_NEW, Y_NEW)
    assert search.cv_results_["mean_test_score"].min() > 0.5
    assert len(pretrained.history) == epochs
    for key, value in meta_state(pretrained).items():
        assert torch.equal(value, before[key])


def test_pretraining_beats_untrained_initialisation(pretrained):
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=10, n_episodes=40, random_state=4)
    meta = cross_val_score(pretrained, X_NEW, Y_NEW, cv=cv).mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotMetaFittedWarning)
        untrained = cross_val_score(PretrainedClassifier(**LEARNER), X_NEW, Y_NEW, cv=cv).mean()
    assert meta > untrained + 0.3, (meta, untrained)


def test_validation_tasks_measure_few_shot_accuracy_of_the_adaptation_rule():
    learner = PretrainedClassifier(**dict(LEARNER, max_epochs=2))
    val_tasks = list(EpisodeSampler(X_NEW, Y_NEW, n_way=5, k_shot=1, n_query=5, n_tasks=5, random_state=0))
    learner.meta_fit(TASKS[:20], val_tasks=val_tasks)
    assert 0.2 < learner.history[-1, "valid_acc"] <= 1
    assert np.isfinite(learner.history[-1, "valid_loss"])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda l: l.set_params(classifier="svm").fit(X_NEW[:10], Y_NEW[:10]), "classifier must be one of"),
        (lambda l: l.set_params(normalize="zscore").transform(X_NEW[:10]), "normalize must be one of"),
        (lambda l: l.partial_meta_fit(TASKS[:1]), "warm start needs the same classes"),
        (
            lambda l: l.meta_fit([Task(np.zeros((2, 24)), [0, 1], np.zeros((2, 24)), [0, 7], classes=["a", "b"])]),
            "task labels must be integers 0 .. 1",
        ),
    ],
    ids=["classifier", "normalize", "warm-start-classes", "labels-not-indexing-classes"],
)
def test_bad_input_raises(pretrained, call, message):
    with pytest.raises(ValueError, match=message):
        call(clone(pretrained))
