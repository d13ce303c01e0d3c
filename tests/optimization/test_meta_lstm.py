import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError

from conftest import make_subspace_classes
from skmeta import EpisodeSampler, MAMLClassifier, MAMLRegressor, MetaLSTMClassifier, MetaLSTMRegressor
from skmeta.datasets import SinusoidTasks, make_sinusoid
from skmeta.modules import MLP
from skmeta.optimization import LearnedOptimizer, MetaLSTMUpdate
from skmeta.optimization.meta_lstm import preprocess
from skmeta.utils.estimator_checks import meta_state

TINY = dict(module__hidden_sizes=(8,), verbose=0, random_state=0)




X_POOL, Y_POOL = make_subspace_classes(n_classes=30, n_per_class=12, n_features=10)
TASKS = list(EpisodeSampler(X_POOL[Y_POOL < 20], Y_POOL[Y_POOL < 20], n_way=3, k_shot=2, n_query=4, n_tasks=24,
                            random_state=0))
X_NEW, Y_NEW = X_POOL[Y_POOL >= 20], Y_POOL[Y_POOL >= 20]
SINE_TASKS = list(SinusoidTasks(n_tasks=24, k_shot=5, n_query=5, random_state=0))
X_SINE, Y_SINE = make_sinusoid(40, random_state=1)
PARAMS = dict(module__hidden_sizes=(16,), inner_lr=0.3, inner_steps=2, batch_size=4, max_epochs=1, verbose=0,
              random_state=0)
# The rule with constant gates, forget = 1 and input = inner_lr: gradient descent.
SGD_GATES = dict(forget_init=1.0, gate_init_scale=0.0)




def _with_sgd_gates(learner):
    learner.update_rule_.init_scale, learner.update_rule_.forget_init = 0.0, 1.0
    learner.update_rule_.reset_parameters()
    return learner


def _meta_gradients(learner, tasks):
    batch = next(iter(learner.get_iterator(learner.get_dataset(tasks), training=True)))
    learner.module_.zero_grad(set_to_none=True)
    learner.meta_loss(batch, training=True)[0].backward()
    return [p.grad for p in learner.module_.parameters()]


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("maml_cls, lstm_cls, tasks, X, y, query", [
    (MAMLClassifier, MetaLSTMClassifier, TASKS, X_NEW[np.r_[0:2, 12:14, 24:26]], Y_NEW[np.r_[0:2, 12:14, 24:26]],
     X_NEW[30:60]),
    (MAMLRegressor, MetaLSTMRegressor, SINE_TASKS, X_SINE[:5], Y_SINE[:5], X_SINE[5:]),
], ids=["classifier", "regressor"])
def test_gates_fixed_at_forget_one_and_input_lr_are_maml(maml_cls, lstm_cls, tasks, X, y, query, first_order):
    params = dict(PARAMS, first_order=first_order, inner_lr=0.3 if maml_cls is MAMLClassifier else 0.02)
    maml = maml_cls(**params).meta_fit(tasks)
    lstm = _with_sgd_gates(lstm_cls(**params, **SGD_GATES).meta_fit(tasks))
    # The same random_state gives the same initial network (no meta-training epoch).
    unmoved = dict(params, max_epochs=0)
    fresh_maml, fresh_lstm = maml_cls(**unmoved).meta_fit(tasks), lstm_cls(**unmoved).meta_fit(tasks)
    for a, b in zip(fresh_maml.module_.parameters(), fresh_lstm.module_.parameters()):
        assert torch.equal(a, b)
    lstm.module_.load_state_dict(maml.module_.state_dict())
    for a, b in zip(_meta_gradients(maml, tasks[:4]), _meta_gradients(lstm, tasks[:4])):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    predict = "predict_proba" if maml_cls is MAMLClassifier else "predict"
    expected = getattr(maml.fit(X, y), predict)(query)
    np.testing.assert_allclose(getattr(lstm.fit(X, y), predict)(query), expected, rtol=1e-6, atol=1e-6)
    # And the adapted weights themselves, which the predictions could hide.
    for name, value in maml.adapted_params_.items():
        torch.testing.assert_close(lstm.adapted_params_[name], value, rtol=1e-6, atol=1e-6)


def test_first_order_truncates_the_gradients_the_rule_reads():
    second = _with_sgd_gates(MetaLSTMClassifier(**PARAMS).meta_fit(TASKS))
    first = _with_sgd_gates(MetaLSTMClassifier(**PARAMS, first_order=True).meta_fit(TASKS))
    first.module_.load_state_dict(second.module_.state_dict())
    gradients = [_meta_gradients(learner, TASKS[:4]) for learner in (second, first)]
    assert max(float((a - b).abs().max()) for a, b in zip(*gradients)) > 1e-4
    # The rule's own parameters get a meta-gradient either way.
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in first.update_rule_.parameters())


def test_the_update_rule_is_meta_learned_cloned_and_used_in_fit():
    learner = MetaLSTMClassifier(**dict(PARAMS, max_epochs=2)).meta_fit(TASKS)
    untrained = MetaLSTMUpdate(input_init=0.3, forget_init=0.99, init_scale=0.01)
    assert not torch.allclose(learner.update_rule_.gate_bias, untrained.gate_bias)
    state = meta_state(learner)
    assert {"update_rule.gate_weight", "update_rule.gate_bias"} <= set(state)
    optimised = {id(p) for group in learner.optimizer_.param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in learner.update_rule_.parameters())
    support = np.r_[0:2, 12:14, 24:26]
    before = learner.fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[30:40])
    with torch.no_grad():
        learner.update_rule_.gate_bias[1] = -30.0  # input gate 0: no step is taken
        learner.update_rule_.gate_bias[0] = 30.0  # forget gate 1: the weights are kept
        learner.update_rule_.gate_weight.zero_()
    frozen = learner.fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[30:40])
    with torch.no_grad():
        logits = learner.module_(torch.as_tensor(X_NEW[30:40]))
    np.testing.assert_allclose(frozen, torch.softmax(logits, 1).numpy(), rtol=1e-6)
    assert np.abs(before - frozen).max() > 1e-4


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=20))
def test_preprocessing_is_finite_bounded_and_invertible(values):
    x = torch.tensor(values, dtype=torch.float32)
    features = preprocess(x, p=10.0)
    assert torch.isfinite(features).all() and features.abs().max() <= 1.5
    large = x.abs() >= np.exp(-10)
    recovered = torch.where(large, features[:, 1] * torch.exp(10 * features[:, 0]), features[:, 1] * np.exp(-10))
    torch.testing.assert_close(recovered, x, rtol=1e-4, atol=1e-12)


def test_preprocessing_of_a_zero_gradient_has_a_finite_derivative():
    x = torch.zeros(3, requires_grad=True)
    (preprocess(x) * torch.tensor([1.0, 2.0])).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_learned_optimizer_needs_a_closure_and_a_rule():
    w = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(TypeError, match="update_rule must be a MetaLSTMUpdate, got SGD"):
        LearnedOptimizer([w], torch.optim.SGD([w], lr=0.1))
    with pytest.raises(ValueError, match="needs a closure returning the loss"):
        LearnedOptimizer([w], MetaLSTMUpdate()).step()
    with pytest.raises(NotFittedError, match="call meta_fit"):
        MetaLSTMRegressor().as_optimizer([w])


def _fresh_network(seed, hidden_sizes=(40, 40)):
    with torch.random.fork_rng():  # the network's own seed, the global stream untouched
        torch.manual_seed(seed)
        return MLP(in_features=1, hidden_sizes=hidden_sizes, out_features=1)


def test_learned_optimizer_with_sgd_gates_is_sgd():
    networks = [_fresh_network(0, (8,)) for _ in range(2)]
    X, y = (torch.as_tensor(a).reshape(-1, 1) for a in make_sinusoid(10, random_state=0))
    optimizers = [torch.optim.SGD(networks[0].parameters(), lr=0.05),
                  LearnedOptimizer(networks[1].parameters(), MetaLSTMUpdate(input_init=0.05, **{
                      "forget_init": 1.0, "init_scale": 0.0}))]
    for network, optimizer in zip(networks, optimizers):
        def closure(network=network, optimizer=optimizer):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(network(X), y)
            loss.backward()
            return loss

        for _ in range(5):
            optimizer.step(closure)
    for a, b in zip(*(network.parameters() for network in networks)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def _train(network, optimizer, X, y, n_steps):
    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(network(X), y)
        loss.backward()
        return loss

    for _ in range(n_steps):
        optimizer.step(closure)
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(network(X), y))


def test_learned_optimizer_trains_a_fresh_network_faster_than_adam():
    """Andrychowicz et al.'s use: the rule meta-trained on sinusoids trains
    new, randomly initialised networks on new sinusoids, with a lower loss
    after 20 steps than Adam (its default step size) and than the rule
    before meta-training (gradient descent of step 0.01, nearly)."""
    learner = MetaLSTMRegressor(
        module__hidden_sizes=(40, 40), inner_steps=5, inner_lr=0.01, first_order=True, batch_size=10,
        max_epochs=6, optimizer__param_groups=[("gate_*", {"lr": 0.05})], verbose=0, random_state=0,
    ).meta_fit(SinusoidTasks(n_tasks=400, k_shot=10, n_query=10, random_state=0))
    untrained = MetaLSTMUpdate(input_init=0.01, forget_init=0.99)
    losses = {"learned": [], "untrained": [], "adam": []}
    for seed, task in enumerate(SinusoidTasks(n_tasks=10, k_shot=10, random_state=1)):
        X, y = task.X_support, task.y_support.reshape(-1, 1)
        for name, make in [("learned", learner.as_optimizer), ("untrained", lambda p: LearnedOptimizer(p, untrained)),
                           ("adam", lambda p: torch.optim.Adam(p))]:
            network = _fresh_network(100 + seed)
            losses[name].append(_train(network, make(network.parameters()), X, y, n_steps=20))
    mean = {name: np.mean(values) for name, values in losses.items()}
    assert mean["learned"] < 0.85 * mean["adam"] and mean["learned"] < 0.9 * mean["untrained"], mean


@pytest.mark.parametrize("params, message", [
    (dict(inner_lr=1.5), "inner_lr == 1.5, must be < 1"),
    (dict(forget_init=0.0), "forget_init == 0.0, must be > 0"),
    (dict(forget_init=1.01), "forget_init == 1.01, must be <= 1"),
    (dict(gate_init_scale=-0.1), "gate_init_scale == -0.1, must be >= 0"),
], ids=["inner_lr", "forget_init_low", "forget_init_high", "gate_init_scale"])
def test_bad_gate_parameters_raise(params, message):
    with pytest.raises(ValueError, match=message):
        MetaLSTMClassifier(**{**PARAMS, **params}).meta_fit(TASKS)
