import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neighbors import NearestCentroid
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conftest import subspace_tasks
from skmeta import EpisodeSampler, ProtoNetClassifier
from skmeta.base import NotMetaFittedWarning
from skmeta.model_selection import EpisodicSplit
from skmeta.modules import Conv4
from skmeta.utils.estimator_checks import meta_state

TINY = dict(module__hidden_sizes=(16,), module__out_features=8, verbose=0, random_state=0)

# Checks that cannot apply to a skorch-based few-shot learner, with the reason.


TASKS, X_NEW, Y_NEW = subspace_tasks()
LEARNER = dict(module__hidden_sizes=(32,), module__out_features=16, max_epochs=4, lr=3e-3, verbose=0, random_state=0)


@pytest.fixture(scope="module")
def meta_fitted():
    return ProtoNetClassifier(**LEARNER).meta_fit(TASKS)


def test_identity_backbone_equals_nearest_centroid():
    X, y = load_digits(return_X_y=True)
    cv = EpisodicSplit(n_way=5, k_shot=3, n_query=10, n_episodes=10, random_state=0)
    learner = ProtoNetClassifier(module=torch.nn.Identity, random_state=0)
    for support, query in cv.split(X, y):
        with pytest.warns(NotMetaFittedWarning):
            learner.fit(X[support], y[support])
        expected = NearestCentroid().fit(X[support], y[support]).predict(X[query])
        np.testing.assert_array_equal(learner.predict(X[query]), expected)


def test_cross_val_score_equals_episode_by_episode_adaptation(meta_fitted):
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=10, n_episodes=30, random_state=1)
    scores = cross_val_score(meta_fitted, X_NEW, Y_NEW, cv=cv)
    by_hand = []
    for support, query in cv.split(X_NEW, Y_NEW):
        meta_fitted.fit(X_NEW[support], Y_NEW[support])
        by_hand.append(np.mean(meta_fitted.predict(X_NEW[query]) == Y_NEW[query]))
    np.testing.assert_allclose(scores, by_hand)


def test_meta_fit_beats_untrained_initialisation(meta_fitted):
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=10, n_episodes=50, random_state=2)
    meta = cross_val_score(meta_fitted, X_NEW, Y_NEW, cv=cv).mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotMetaFittedWarning)
        untrained = cross_val_score(ProtoNetClassifier(**LEARNER), X_NEW, Y_NEW, cv=cv).mean()
    assert meta > untrained + 0.3, (meta, untrained)


def test_grid_search_over_distance_does_not_meta_train_again(meta_fitted):
    before = meta_state(meta_fitted)
    epochs = len(meta_fitted.history)
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=10, n_episodes=10, random_state=3)
    search = GridSearchCV(meta_fitted, {"distance": ["sqeuclidean", "cosine"]}, cv=cv, refit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotMetaFittedWarning)
        search.fit(X_NEW, Y_NEW)
    assert search.best_params_["distance"] in ("sqeuclidean", "cosine")
    assert search.cv_results_["mean_test_score"].min() > 0.5
    assert len(meta_fitted.history) == epochs
    for key, value in meta_state(meta_fitted).items():
        assert torch.equal(value, before[key])


def test_pipeline_with_scaler_keeps_meta_fit(meta_fitted):
    cv = EpisodicSplit(n_way=5, k_shot=2, n_query=10, n_episodes=10, random_state=4)
    pipe = make_pipeline(StandardScaler(), meta_fitted)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotMetaFittedWarning)
        scores = cross_val_score(pipe, X_NEW, Y_NEW, cv=cv)
    assert scores.shape == (10,) and scores.mean() > 0.5


def test_transform_feeds_a_scikit_learn_classifier(meta_fitted):
    Z = meta_fitted.transform(X_NEW[:7])
    assert Z.shape == (7, 16) and Z.dtype == np.float32
    cv = EpisodicSplit(n_way=5, k_shot=2, n_query=10, n_episodes=10, random_state=5)
    pipe = make_pipeline(meta_fitted, LogisticRegression(max_iter=500))
    assert cross_val_score(pipe, X_NEW, Y_NEW, cv=cv).mean() > 0.5
    assert list(meta_fitted.get_feature_names_out())[:2] == ["protonetclassifier0", "protonetclassifier1"]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda l: l.fit(X_NEW[:10, :5], Y_NEW[:10]), "features"),
        (lambda l: l.fit(np.full((10, 24), np.nan), Y_NEW[:10]), "NaN"),
        (lambda l: l.fit(X_NEW[:10], Y_NEW[:9]), "inconsistent numbers of samples"),
        (lambda l: clone(l).predict(X_NEW[:3]), "not fitted"),
        (lambda l: l.fit(X_NEW[:10], Y_NEW[:10]).score(X_NEW[10:20], Y_NEW[10:20] + 1000), "absent from the support set"),
    ],
    ids=["feature-count", "nan", "length", "unfitted", "unseen-query-label"],
)
def test_bad_input_raises_and_keeps_meta_state(meta_fitted, call, message):
    before = meta_state(meta_fitted)
    with pytest.raises((ValueError, TypeError), match=message):
        call(meta_fitted)
    for key, value in meta_state(meta_fitted).items():
        assert torch.equal(value, before[key])


def test_changing_a_meta_training_parameter_warns_and_keeps_weights(meta_fitted):
    learner = clone(meta_fitted)
    before = meta_state(learner)
    learner.set_params(module__out_features=4, lr=0.1)
    with pytest.warns(UserWarning, match="lr, module__out_features changed after meta_fit"):
        learner.fit(X_NEW[:10], Y_NEW[:10])
    for key, value in meta_state(learner).items():
        assert torch.equal(value, before[key])


def test_conv4_on_images_nd_and_flat_agree():
    rng = np.random.RandomState(0)
    images = rng.rand(40, 28, 28).astype(np.float32)
    labels = np.repeat(np.arange(4), 10)
    tasks = list(EpisodeSampler(images, labels, n_way=4, k_shot=2, n_query=3, n_tasks=4, random_state=0))
    learner = ProtoNetClassifier(Conv4, module__hidden_channels=8, max_epochs=1, verbose=0, random_state=0).meta_fit(tasks)
    flat = learner.fit(images.reshape(40, -1), labels).predict_proba(images.reshape(40, -1))
    nd = learner.fit(images, labels).predict_proba(images)
    np.testing.assert_allclose(flat, nd, rtol=1e-5)
    assert learner.meta_input_shape_ == (28, 28)


def test_verbose_meta_fit_shows_progress_and_history(capsys):
    learner = ProtoNetClassifier(**dict(LEARNER, max_epochs=2, verbose=1))
    learner.meta_fit(TASKS[:10], val_tasks=TASKS[10:15])
    out = capsys.readouterr()
    assert "train_loss" in out.out and "valid_acc" in out.out
    assert "/15" in out.err  # skorch's progress bar: 10 training + 5 validation meta-batches
    assert len(learner.history) == 2 and 0 <= learner.history[-1, "valid_acc"] <= 1


def test_checkpoint_callback_pickles_a_resumable_learner(tmp_path):
    import pickle

    from skorch.callbacks import Checkpoint

    checkpoint = Checkpoint(monitor=None, f_params=None, f_optimizer=None, f_criterion=None,
                            f_history=None, f_pickle="learner.pkl", dirname=str(tmp_path))
    learner = ProtoNetClassifier(**dict(LEARNER, max_epochs=2), callbacks=[checkpoint]).meta_fit(TASKS[:10])
    with open(tmp_path / "learner.pkl", "rb") as f:
        restored = pickle.load(f)
    for key, value in meta_state(learner).items():
        assert torch.equal(value, meta_state(restored)[key])
    restored.partial_meta_fit(TASKS[10:20], epochs=1)
    assert len(restored.history) == 3


def test_bfloat16_meta_training_and_prediction():
    learner = ProtoNetClassifier(**dict(LEARNER, precision="bfloat16")).meta_fit(TASKS)
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=10, n_episodes=30, random_state=6)
    assert cross_val_score(learner, X_NEW, Y_NEW, cv=cv).mean() > 0.6
    probabilities = learner.fit(X_NEW[:20], Y_NEW[:20]).predict_proba(X_NEW[20:40])
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-6)
    with pytest.raises(ValueError, match="precision must be"):
        learner.set_params(precision="float16").fit(X_NEW[:20], Y_NEW[:20])
