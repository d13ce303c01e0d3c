import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from conftest import make_subspace_classes
from skmeta import EpisodeSampler, MAMLClassifier, MAMLRegressor
from skmeta.base import NotMetaFittedWarning
from skmeta.datasets import SinusoidTasks, make_sinusoid
from skmeta.model_selection import EpisodicSplit
from skmeta.utils.estimator_checks import meta_state

TINY = dict(module__hidden_sizes=(8,), verbose=0, random_state=0)


def _classification_family():
    X, y = make_subspace_classes(n_classes=30, n_per_class=12, n_features=10)
    train = y < 20
    tasks = list(EpisodeSampler(X[train], y[train], n_way=3, k_shot=2, n_query=4, n_tasks=24, random_state=0))
    return tasks, X[~train], y[~train]


TASKS, X_NEW, Y_NEW = _classification_family()
SINE_TASKS = list(SinusoidTasks(n_tasks=24, k_shot=5, n_query=5, random_state=0))
X_SINE, Y_SINE = make_sinusoid(40, random_state=1)
CLASSIFIER = dict(module__hidden_sizes=(16,), inner_lr=0.3, batch_size=4, max_epochs=1, verbose=0, random_state=0)
REGRESSOR = dict(module__hidden_sizes=(16,), batch_size=4, max_epochs=1, verbose=0, random_state=0)


@pytest.fixture(scope="module")
def meta_fitted():
    return MAMLClassifier(**dict(CLASSIFIER, max_epochs=3)).meta_fit(TASKS)


def test_zero_adaptation_steps_predicts_as_the_meta_model(meta_fitted):
    learner = clone(meta_fitted).set_params(adapt_steps=0)
    support = np.r_[0:2, 12:14]  # a 2-way task: the first 2 of the 3 outputs
    proba = learner.fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[20:30])
    with torch.no_grad():
        logits = learner.module_(torch.as_tensor(X_NEW[20:30]))[:, :2]
    np.testing.assert_allclose(proba, torch.softmax(logits, 1).numpy(), rtol=1e-6)

    regressor = MAMLRegressor(**REGRESSOR, adapt_steps=0).meta_fit(SINE_TASKS)
    predicted = regressor.fit(X_SINE[:5], Y_SINE[:5]).predict(X_SINE[5:])
    with torch.no_grad():
        np.testing.assert_allclose(predicted, regressor.module_(torch.as_tensor(X_SINE[5:])).numpy().ravel(), rtol=1e-6)


def test_adapt_steps_and_adapt_lr_default_to_the_inner_values(meta_fitted):
    support, query = np.r_[0:2, 12:14, 24:26], np.r_[30:40]
    default = clone(meta_fitted).fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[query])
    explicit = clone(meta_fitted).set_params(adapt_steps=1, adapt_lr=0.3)
    np.testing.assert_array_equal(explicit.fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[query]), default)
    more = clone(meta_fitted).set_params(adapt_steps=5).fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[query])
    assert np.abs(more - default).max() > 1e-4


def test_adaptation_steps_lower_the_support_loss(meta_fitted):
    support = np.r_[0:2, 12:14, 24:26]
    losses = []
    for steps in (0, 1, 5):
        proba = clone(meta_fitted).set_params(adapt_steps=steps).fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[support])
        codes = np.unique(Y_NEW[support], return_inverse=True)[1]
        losses.append(-np.log(proba[np.arange(len(codes)), codes]).mean())
    assert losses[0] > losses[1] > losses[2], losses


def test_grid_search_over_adapt_steps_keeps_meta_parameters(meta_fitted):
    before = meta_state(meta_fitted)
    epochs = len(meta_fitted.history)
    cv = EpisodicSplit(n_way=3, k_shot=2, n_query=5, n_episodes=6, random_state=0)
    search = GridSearchCV(meta_fitted, {"adapt_steps": [0, 1, 5]}, cv=cv, refit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither never-meta-fitted nor changed-meta-parameter warnings
        search.fit(X_NEW, Y_NEW)
    by_hand = cross_val_score(clone(meta_fitted).set_params(adapt_steps=5), X_NEW, Y_NEW, cv=cv).mean()
    np.testing.assert_allclose(search.cv_results_["mean_test_score"][2], by_hand)
    assert len(meta_fitted.history) == epochs
    for key, value in meta_state(meta_fitted).items():
        assert torch.equal(value, before[key])


def test_grid_search_over_adapt_lr_for_a_regressor():
    learner = MAMLRegressor(**REGRESSOR).meta_fit(SINE_TASKS)
    search = GridSearchCV(learner, {"adapt_lr": [0.001, 0.01], "adapt_steps": [1, 10]},
                          cv=KFold(3, shuffle=True, random_state=0), scoring="neg_mean_squared_error", refit=False)
    search.fit(X_SINE, Y_SINE)
    assert search.cv_results_["mean_test_score"].shape == (4,)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_changing_inner_lr_after_meta_fit_warns_but_adapt_lr_does_not(meta_fitted):
    learner = clone(meta_fitted).set_params(adapt_lr=0.1, adapt_steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learner.fit(X_NEW[:6], Y_NEW[:6])
    learner.set_params(inner_lr=0.1, first_order=True)
    with pytest.warns(UserWarning, match="first_order, inner_lr changed after meta_fit"):
        learner.fit(X_NEW[:6], Y_NEW[:6])


def test_meta_fitting_beats_the_untrained_initialisation_on_sinusoids():
    tasks = SinusoidTasks(n_tasks=400, k_shot=10, n_query=10, random_state=0)
    params = dict(module__hidden_sizes=(40, 40), batch_size=20, max_epochs=6, lr=3e-3, verbose=0, random_state=0)
    learner = MAMLRegressor(**params).meta_fit(tasks)
    untrained = MAMLRegressor(**params)

    def mse(estimator):
        errors = []
        for task in SinusoidTasks(n_tasks=30, k_shot=10, n_query=30, random_state=1):
            prediction = estimator.fit(task.X_support, task.y_support).predict(task.X_query)
            errors.append(np.mean((prediction - task.y_query.numpy()) ** 2))
        return np.mean(errors)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotMetaFittedWarning)
        assert mse(learner) < 0.7 * mse(untrained), (mse(learner), mse(untrained))
