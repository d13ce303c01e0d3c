"""Behaviour every optimisation-based learner shares (one inner loop, one base)."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from conftest import make_subspace_classes
from skmeta import (
    ANILClassifier,
    ANILRegressor,
    EpisodeSampler,
    MAMLClassifier,
    MAMLRegressor,
    MetaLSTMClassifier,
    MetaLSTMRegressor,
    MetaSGDClassifier,
    MetaSGDRegressor,
    ReptileClassifier,
    ReptileRegressor,
)
from skmeta.base import NotMetaFittedWarning
from skmeta.datasets import SinusoidTasks, make_sinusoid
from skmeta.modules import Conv4
from skmeta.utils.estimator_checks import meta_state

CLASSIFIERS = [MAMLClassifier, MetaSGDClassifier, ANILClassifier, ReptileClassifier, MetaLSTMClassifier]
REGRESSORS = [MAMLRegressor, MetaSGDRegressor, ANILRegressor, ReptileRegressor, MetaLSTMRegressor]

X_POOL, Y_POOL = make_subspace_classes(n_classes=30, n_per_class=12, n_features=10)
TASKS = list(EpisodeSampler(X_POOL[Y_POOL < 20], Y_POOL[Y_POOL < 20], n_way=3, k_shot=2, n_query=4, n_tasks=16,
                            random_state=0))
X_NEW, Y_NEW = X_POOL[Y_POOL >= 20], Y_POOL[Y_POOL >= 20]
SINE_TASKS = list(SinusoidTasks(n_tasks=16, k_shot=5, n_query=5, random_state=0))
X_SINE, Y_SINE = make_sinusoid(30, random_state=1)
PARAMS = dict(module__hidden_sizes=(16,), inner_lr=0.1, inner_steps=2, batch_size=4, max_epochs=1, verbose=0,
              random_state=0)


def _meta_fitted(cls, **params):
    tasks = SINE_TASKS if cls in REGRESSORS else TASKS
    return cls(**{**PARAMS, **params}).meta_fit(tasks)


def _support_and_query(cls):
    if cls in REGRESSORS:
        return (X_SINE[:5], Y_SINE[:5]), X_SINE[5:]
    support = np.r_[0:2, 12:14, 24:26]
    return (X_NEW[support], Y_NEW[support]), X_NEW[30:60]


@pytest.mark.parametrize("cls", CLASSIFIERS + REGRESSORS)
def test_fit_leaves_meta_parameters_and_repeats_exactly(cls):
    learner = _meta_fitted(cls)
    before = meta_state(learner)
    (X, y), X_query = _support_and_query(cls)
    first = learner.fit(X, y).predict(X_query)
    assert any(not torch.equal(learner.adapted_params_[name], p) for name, p in learner.module_.named_parameters())
    other = make_sinusoid(5, random_state=7) if cls in REGRESSORS else (X_NEW[60:66], Y_NEW[60:66])
    learner.fit(*other)
    np.testing.assert_array_equal(learner.fit(X, y).predict(X_query), first)
    for key, value in meta_state(learner).items():
        assert torch.equal(value, before[key]), key
        assert value.grad is None or key.startswith("criterion")


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_fewer_support_classes_than_outputs_use_the_first_outputs(cls):
    three_way = _meta_fitted(cls)
    two_way_tasks = EpisodeSampler(X_POOL, Y_POOL, n_way=2, k_shot=1, n_query=1, n_tasks=4, random_state=0)
    two_way = cls(**PARAMS).meta_fit(two_way_tasks)
    state = {
        name: value[:2] if name.startswith("layers.2") else value
        for name, value in three_way.module_.state_dict().items()
    }
    two_way.module_.load_state_dict(state)
    if hasattr(three_way, "inner_lrs_"):
        rates = {name: value[:2] if name.startswith("rates.layers-2") else value
                 for name, value in three_way.inner_lrs_.state_dict().items()}
        two_way.inner_lrs_.load_state_dict(rates)
    if hasattr(three_way, "update_rule_"):  # coordinate-wise: the same rule for any number of outputs
        two_way.update_rule_.load_state_dict(three_way.update_rule_.state_dict())
    support = np.r_[0:2, 12:14]
    expected = two_way.fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[30:40])
    got = three_way.fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[30:40])
    assert got.shape == (10, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_more_support_classes_than_outputs_raise_naming_both_numbers(cls):
    learner = _meta_fitted(cls)
    before = meta_state(learner)
    with pytest.raises(ValueError, match="the support set has 5 classes, but .* has 3 outputs"):
        learner.fit(X_NEW[:60], Y_NEW[:60])
    with pytest.raises(ValueError, match="a meta-training task has 4 classes, but .* has 3 outputs"):
        learner.set_params(warm_start=True).meta_fit(
            EpisodeSampler(X_POOL, Y_POOL, n_way=4, k_shot=1, n_query=1, n_tasks=4, random_state=0))
    for key, value in meta_state(learner).items():
        assert torch.equal(value, before[key])


@pytest.mark.parametrize("cls", REGRESSORS)
def test_regressor_output_count_must_match_the_network(cls):
    learner = cls(**{**PARAMS, "module__out_features": 2})
    with pytest.raises(ValueError, match="a meta-training task has 1 targets, but .* has 2 outputs"):
        learner.meta_fit(SINE_TASKS)


@pytest.mark.parametrize("cls", [MAMLClassifier, ReptileRegressor])
def test_never_meta_fitted_fit_builds_a_head_for_the_support_set(cls):
    learner = cls(**PARAMS)
    (X, y), X_query = _support_and_query(cls)
    if cls in CLASSIFIERS:
        X, y = X_NEW[:60], Y_NEW[:60]  # 5 classes
    with pytest.warns(NotMetaFittedWarning):
        learner.fit(X, y)
    out = learner.predict_proba(X_query) if cls in CLASSIFIERS else learner.predict(X_query)
    assert out.shape == ((len(X_query), 5) if cls in CLASSIFIERS else (len(X_query),))


@pytest.mark.parametrize(
    "params, stage, message",
    [
        (dict(inner_steps=-1), "meta_fit", "inner_steps == -1, must be >= 0"),
        (dict(inner_lr=0.0), "meta_fit", "inner_lr == 0.0, must be > 0"),
        (dict(vectorize_tasks="sometimes"), "meta_fit", "vectorize_tasks must be 'auto', True or False"),
        (dict(adapt_steps=1.5), "fit", "adapt_steps must be an instance of"),
        (dict(adapt_lr=-1.0), "fit", "adapt_lr == -1.0, must be > 0"),
    ],
    ids=["inner_steps", "inner_lr", "vectorize_tasks", "adapt_steps", "adapt_lr"],
)
@pytest.mark.filterwarnings("ignore::skmeta.base.NotMetaFittedWarning")
def test_bad_hyperparameters_raise_when_used(params, stage, message):
    learner = MAMLClassifier(**{**PARAMS, **params})  # construction never validates (scikit-learn's rule)
    with pytest.raises((ValueError, TypeError), match=message):
        learner.meta_fit(TASKS) if stage == "meta_fit" else learner.fit(X_NEW[:6], Y_NEW[:6])


def test_reptile_needs_an_inner_step():
    with pytest.raises(ValueError, match="inner_steps == 0, must be >= 1"):
        ReptileClassifier(**{**PARAMS, "inner_steps": 0}).meta_fit(TASKS)


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_conv4_learners_on_images_flat_and_nd_agree(cls):
    rng = np.random.RandomState(0)
    images = rng.rand(40, 12, 12).astype(np.float32)
    labels = np.repeat(np.arange(4), 10)
    tasks = list(EpisodeSampler(images, labels, n_way=4, k_shot=1, n_query=2, n_tasks=4, random_state=0))
    learner = cls(Conv4, module__input_shape=(1, 12, 12), module__hidden_channels=4, module__n_blocks=2,
                  inner_lr=0.1, batch_size=2, verbose=0, random_state=0).meta_fit(tasks)
    assert learner._vectorize() is False  # "auto": a loop over tasks for convolutional networks
    support = np.r_[0:2, 10:12, 20:22, 30:32]
    flat = learner.fit(images[support].reshape(8, -1), labels[support]).predict_proba(images.reshape(40, -1))
    nd = learner.fit(images[support], labels[support]).predict_proba(images)
    np.testing.assert_allclose(flat, nd, rtol=1e-5, atol=1e-7)
    assert flat.shape == (40, 4) and learner.support_X_.shape == (8, 12, 12)


@pytest.mark.parametrize("cls", [MAMLClassifier, ReptileClassifier, MetaLSTMClassifier])
def test_vectorized_and_looped_meta_training_agree(cls):
    looped = _meta_fitted(cls, vectorize_tasks=False, max_epochs=2)
    vectorized = _meta_fitted(cls, vectorize_tasks=True, max_epochs=2)
    np.testing.assert_allclose(vectorized.history[:, "train_loss"], looped.history[:, "train_loss"], rtol=1e-5)
    for key, value in meta_state(vectorized).items():
        torch.testing.assert_close(value, meta_state(looped)[key], rtol=1e-4, atol=1e-6)


def test_dropout_draws_per_task_masks_and_stays_deterministic():
    params = dict(module__dropout=0.5, max_epochs=2)
    a, b = _meta_fitted(MAMLClassifier, **params), _meta_fitted(MAMLClassifier, **params)
    for key, value in meta_state(a).items():
        assert torch.equal(value, meta_state(b)[key])
    no_dropout = _meta_fitted(MAMLClassifier, max_epochs=2)
    assert not np.allclose(a.history[:, "train_loss"], no_dropout.history[:, "train_loss"])


def test_meta_validation_reports_query_loss_after_adaptation():
    learner = _meta_fitted(MAMLClassifier, max_epochs=1)
    learner.set_params(warm_start=True).meta_fit(TASKS[:4], val_tasks=TASKS[4:8])
    assert 0 <= learner.history[-1, "valid_acc"] <= 1 and np.isfinite(learner.history[-1, "valid_loss"])


@pytest.mark.parametrize("cls", REGRESSORS)
def test_meta_fitting_beats_the_untrained_initialisation(cls):
    params = dict(module__hidden_sizes=(40, 40), batch_size=10, max_epochs=3, lr=3e-3, verbose=0, random_state=0)
    if cls is ANILRegressor:
        params.update(inner_steps=5, inner_lr=0.05)
    if cls is ReptileRegressor:  # SGD on Reptile's direction: lr is the interpolation step
        params.update(inner_steps=10, lr=0.5)
    if cls in (MAMLRegressor, MetaLSTMRegressor):  # steps of 0.01 move the network little: more meta-updates
        params.update(max_epochs=5)
    learner = cls(**params).meta_fit(SinusoidTasks(n_tasks=300, k_shot=10, n_query=10, random_state=0))
    untrained = clone(learner)
    untrained.__dict__.pop("meta_n_features_in_")  # the same estimator, back to its untrained initialisation

    def mse(estimator):
        errors = []
        for task in SinusoidTasks(n_tasks=20, k_shot=10, n_query=20, random_state=1):
            prediction = estimator.fit(task.X_support, task.y_support).predict(task.X_query)
            errors.append(np.mean((prediction - task.y_query.numpy()) ** 2))
        return np.mean(errors)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotMetaFittedWarning)
        trained_mse, untrained_mse = mse(learner), mse(untrained)
    assert trained_mse < 0.8 * untrained_mse, (trained_mse, untrained_mse)


@pytest.mark.parametrize("cls", CLASSIFIERS + REGRESSORS)
def test_zero_head_keeps_the_head_at_zero_and_meta_learns_the_body(cls):
    learner = _meta_fitted(cls, zero_head=True, max_epochs=2)
    shorter = _meta_fitted(cls, zero_head=True, max_epochs=1)
    head = learner.module_.layers[-1]
    assert learner._head_name() == "layers.2"
    assert not head.weight.requires_grad and not head.weight.any() and not head.bias.any()
    assert not torch.equal(learner.module_.layers[0].weight, shorter.module_.layers[0].weight)
    (X, y), X_query = _support_and_query(cls)
    # Adaptation starts from the zero head and moves it; the meta-learned head stays zero.
    learner.fit(X, y)
    assert learner.adapted_params_["layers.2.weight"].abs().sum() > 0 and not head.weight.any()
    # The frozen head survives cloning and further meta-training.
    again = clone(learner).set_params(warm_start=True).meta_fit(SINE_TASKS if cls in REGRESSORS else TASKS)
    assert not again.module_.layers[-1].weight.requires_grad and not again.module_.layers[-1].weight.any()


def test_one_step_from_a_zero_head_gives_centred_class_means():
    """Kao et al.'s observation, which makes the zeroing trick fast: with
    cross-entropy on n classes, the gradient at a zero head is
    (1/n - onehot) f(x) per example, so one step of size lr on n_way x k_shot
    examples sets class c's weights to lr / n_support * sum_x (onehot_c - 1/n) f(x)."""
    learner = MAMLClassifier(**{**PARAMS, "zero_head": True, "inner_steps": 1, "adapt_steps": 1}).meta_fit(TASKS)
    (X, y), _ = _support_and_query(MAMLClassifier)
    learner.fit(X, y)
    weights = {name: value for name, value in learner.module_.named_parameters()}
    adapted = learner.adapted_params_
    # The body moved too (MAML adapts every layer) but its first step starts at the meta-learned body.
    features = learner.module_.layers[:-1](torch.as_tensor(X, dtype=torch.float32)).detach()
    onehot = torch.nn.functional.one_hot(torch.as_tensor(np.searchsorted(learner.classes_, y)), 3).float()
    expected = learner.inner_lr / len(y) * (onehot - 1 / 3).T @ features
    torch.testing.assert_close(adapted["layers.2.weight"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(adapted["layers.2.bias"], torch.zeros(3), rtol=0, atol=1e-7)
    assert weights["layers.2.weight"].abs().sum() == 0


@pytest.mark.parametrize("value", ["yes", 1.5])
def test_zero_head_must_be_a_boolean(value):
    with pytest.raises(ValueError, match=f"zero_head must be True or False, got {value!r}"):
        MAMLClassifier(**{**PARAMS, "zero_head": value}).meta_fit(TASKS)


def test_zero_head_with_a_named_head_and_without_any_linear_layer():
    learner = MAMLClassifier(**{**PARAMS, "zero_head": True, "head": "layers.2"}).meta_fit(TASKS[:4])
    assert not learner.module_.layers[2].weight.any()
    with pytest.raises(ValueError, match="head='layers.1' is not a submodule with parameters of MLP"):
        MAMLClassifier(**{**PARAMS, "zero_head": True, "head": "layers.1"}).meta_fit(TASKS[:4])
