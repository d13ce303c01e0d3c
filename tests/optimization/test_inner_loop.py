"""The shared functional inner loop against plain autograd references."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from conftest import make_subspace_classes
from skmeta import EpisodeSampler, MAMLClassifier, MetaSGDClassifier
from skmeta.modules import Conv4
from skmeta.optimization import TaskBatchNorm, inner_loop, map_tasks, use_task_batch_norm
from skmeta.utils._torch import reference_rows

X_POOL, Y_POOL = make_subspace_classes(n_classes=12, n_per_class=10, n_features=6, random_state=0)
TASKS = list(EpisodeSampler(X_POOL, Y_POOL, n_way=3, k_shot=2, n_query=4, n_tasks=8, random_state=0))
TINY = dict(module__hidden_sizes=(5,), inner_lr=0.3, batch_size=4, max_epochs=1, verbose=0, random_state=0)
IMAGES = np.random.RandomState(0).rand(30, 12, 12).astype(np.float32)
IMAGE_LABELS = np.repeat(np.arange(3), 10)
IMAGE_TASKS = list(EpisodeSampler(IMAGES, IMAGE_LABELS, n_way=3, k_shot=2, n_query=2, n_tasks=2, random_state=0))
IMAGE_SUPPORT = np.r_[0:2, 10:12, 20:22]


def _tiny_conv4(**params):
    """A two-block Conv-4 MAML on 12x12 images, meta-fitted on IMAGE_TASKS."""
    return MAMLClassifier(Conv4, module__input_shape=(1, 12, 12), module__hidden_channels=4, module__n_blocks=2,
                          **{"inner_lr": 0.3, "verbose": 0, "random_state": 0, **params}).meta_fit(IMAGE_TASKS)


def _meta_fitted(**params):
    return MAMLClassifier(**{**TINY, **params}).meta_fit(TASKS)


def _meta_batch(learner, tasks):
    return next(iter(learner.get_iterator(learner.get_dataset(tasks), training=True)))


def _meta_gradient(learner, batch):
    for p in learner.module_.parameters():
        p.grad = None
    learner.meta_loss(batch, training=True)[0].backward()
    return [p.grad.clone() for p in learner.module_.parameters()]


def _reference_gradient(module, batch, lr, n_steps, first_order):
    """MAML written the textbook way: a loop over tasks, inner steps with
    torch.autograd.grad(create_graph=True)."""
    names = [name for name, _ in module.named_parameters()]
    params = list(module.parameters())
    losses = []
    for task in batch:
        fast = params
        for _ in range(n_steps):
            support_loss = F.cross_entropy(functional_call(module, dict(zip(names, fast)), (task.X_support,)), task.y_support)
            grads = torch.autograd.grad(support_loss, fast, create_graph=not first_order)
            fast = [p - lr * g for p, g in zip(fast, grads)]
        logits = functional_call(module, dict(zip(names, fast)), (task.X_query,))
        losses.append(F.cross_entropy(logits, task.y_query))
    return torch.autograd.grad(torch.stack(losses).mean(), params)


@pytest.mark.parametrize("vectorize_tasks", [True, False])
@pytest.mark.parametrize("n_steps", [1, 3])
def test_second_order_meta_gradient_equals_autograd_loop(vectorize_tasks, n_steps):
    learner = _meta_fitted(inner_steps=n_steps, vectorize_tasks=vectorize_tasks)
    batch = _meta_batch(learner, TASKS[:4])
    got = _meta_gradient(learner, batch)
    expected = _reference_gradient(learner.module_, batch, lr=0.3, n_steps=n_steps, first_order=False)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_first_order_meta_gradient_equals_autograd_loop():
    learner = _meta_fitted(inner_steps=2, first_order=True)
    batch = _meta_batch(learner, TASKS[:4])
    expected = _reference_gradient(learner.module_, batch, lr=0.3, n_steps=2, first_order=True)
    for g, e in zip(_meta_gradient(learner, batch), expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_first_order_drops_exactly_the_second_order_term():
    # One step: d/dtheta L_q(theta - lr g_s(theta)) = (I - lr H_s(theta)) g_q,
    # and first order keeps only g_q; the difference is -lr H_s g_q.
    learner = _meta_fitted(inner_steps=1)
    batch = _meta_batch(learner, TASKS[:4])
    second = _meta_gradient(learner, batch)
    first = _meta_gradient(learner.set_params(first_order=True), batch)
    module, lr = learner.module_, 0.3
    names = [name for name, _ in module.named_parameters()]
    params = list(module.parameters())
    term = [torch.zeros_like(p) for p in params]
    for task in batch:
        support_loss = F.cross_entropy(module(task.X_support), task.y_support)
        g_support = torch.autograd.grad(support_loss, params, create_graph=True)
        fast = [(p - lr * g).detach().requires_grad_() for p, g in zip(params, g_support)]
        query_loss = F.cross_entropy(functional_call(module, dict(zip(names, fast)), (task.X_query,)), task.y_query)
        g_query = torch.autograd.grad(query_loss, fast)
        hessian_g_query = torch.autograd.grad(g_support, params, grad_outputs=g_query)
        for t, h in zip(term, hessian_g_query):
            t -= lr * h / len(batch)
    for s, f, t in zip(second, first, term):
        torch.testing.assert_close(s - f, t, rtol=1e-5, atol=1e-6)
    assert max(float(t.abs().max()) for t in term) > 1e-3, "the second-order term is not negligible here"


@pytest.mark.parametrize("first_order", [False, True])
def test_vmapped_meta_gradient_with_batch_norm_equals_task_loop(first_order):
    # F.batch_norm's vmap rule gets second derivatives wrong; TaskBatchNorm must
    # not. The first-order loop normalises support sets with torch's fused
    # kernel, everything else with the explicit formula: they agree.
    params = dict(TINY, inner_steps=2, module__batch_norm=True, first_order=first_order)
    vectorized = _meta_fitted(**params, vectorize_tasks=True)
    looped = _meta_fitted(**params, vectorize_tasks=False)
    batch = _meta_batch(vectorized, TASKS[:4])
    for v, l in zip(_meta_gradient(vectorized, batch), _meta_gradient(looped, batch)):
        torch.testing.assert_close(v, l, rtol=1e-5, atol=1e-6)


def test_task_batch_norm_equals_torch_batch_norm_in_training_mode():
    X = torch.randn(7, 4, 3, 3) * 3 + 1
    reference = torch.nn.BatchNorm2d(4, track_running_stats=False)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 2)
        reference.bias.uniform_(-1, 1)
    module = use_task_batch_norm(torch.nn.Sequential(reference))
    assert isinstance(module[0], TaskBatchNorm)
    torch.testing.assert_close(module[0].weight, reference.weight)
    expected = torch.nn.functional.batch_norm(X, None, None, reference.weight, reference.bias, training=True)
    torch.testing.assert_close(module(X), expected, rtol=1e-5, atol=1e-5)
    # The explicit formula (under vmap, or with a reference set) agrees with the fused kernel.
    with reference_rows(len(X)):
        torch.testing.assert_close(module(X), expected, rtol=1e-5, atol=1e-5)
    assert not any(True for _ in module.buffers()), "no running statistics are kept"


def test_queries_are_normalised_with_support_statistics_one_by_one():
    learner = _tiny_conv4()
    query = np.r_[5:10, 15:20, 25:30]
    batch = learner.fit(IMAGES[IMAGE_SUPPORT], IMAGE_LABELS[IMAGE_SUPPORT]).predict_proba(IMAGES[query])
    one_by_one = np.vstack([learner.predict_proba(IMAGES[[i]]) for i in query])
    np.testing.assert_allclose(one_by_one, batch, rtol=1e-5, atol=1e-6)
    # and the statistics are the support set's: a shifted query batch moves the outputs
    shifted = learner.predict_proba(IMAGES[query] + 1.0)
    assert np.abs(shifted - batch).max() > 1e-3


def test_inner_loop_takes_per_parameter_step_sizes():
    params = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor(3.0)}
    lr = {"a": torch.tensor([0.5, 0.25]), "b": torch.tensor(0.0)}
    adapted = inner_loop(lambda p: 0.5 * (p["a"] ** 2).sum() + p["b"], params, lr, n_steps=1)
    torch.testing.assert_close(adapted["a"], torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(adapted["b"], torch.tensor(3.0))
    assert inner_loop(lambda p: (p["b"] ** 2), params, 0.1, n_steps=0) is params


def test_map_tasks_runs_tasks_of_different_shapes_one_by_one():
    learner = _meta_fitted()
    mixed = [TASKS[0], next(iter(EpisodeSampler(X_POOL, Y_POOL, n_way=2, k_shot=3, n_query=1, n_tasks=1, random_state=1)))]
    batch = _meta_batch(learner, mixed)
    losses, n_correct = map_tasks(lambda Xs, ys, Xq, yq, n_way: (Xs.sum(), torch.tensor(n_way)), batch, vectorize=True)
    np.testing.assert_array_equal(n_correct.numpy(), [3, 2])
    assert losses.shape == (2,)
    loss, accuracy = learner.meta_loss(batch, training=False)
    assert loss.ndim == 0 and 0 <= accuracy <= 1


def test_adapted_weights_keep_the_layout_of_the_meta_parameters():
    # A channels-last weight with one input channel is also "contiguous" by
    # shape; value - lr * grad comes out with contiguous strides, and the
    # convolution then switches the activations' layout (CPU pooling's slow path).
    weight = torch.empty(4, 1, 3, 3, memory_format=torch.channels_last).normal_(generator=torch.Generator().manual_seed(0))
    assert weight.stride() == (9, 1, 3, 1)
    adapted = inner_loop(lambda p: (p["w"] ** 2).sum(), {"w": weight}, lr=0.1, n_steps=2)
    assert adapted["w"].stride() == weight.stride()
    torch.testing.assert_close(adapted["w"], weight * 0.8 ** 2)
    learner = _tiny_conv4().fit(IMAGES[IMAGE_SUPPORT], IMAGE_LABELS[IMAGE_SUPPORT])
    for name, p in learner.module_.named_parameters():
        assert learner.adapted_params_[name].stride() == p.stride(), name


@pytest.mark.parametrize("first_order", [False, True])
def test_relaid_weights_leave_the_conv4_meta_gradient_unchanged(first_order, monkeypatch):
    learner = _tiny_conv4(inner_steps=2, first_order=first_order)
    batch = _meta_batch(learner, IMAGE_TASKS)
    relaid = _meta_gradient(learner, batch)
    monkeypatch.setattr("skmeta.optimization._inner_loop._laid_out_as", lambda new, old: new)
    for r, plain in zip(relaid, _meta_gradient(learner, batch)):
        torch.testing.assert_close(r, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: _tiny_conv4(inner_steps=2),
    lambda: _tiny_conv4(inner_steps=2, first_order=True),
    lambda: MetaSGDClassifier(Conv4, module__input_shape=(1, 12, 12), module__hidden_channels=4, module__n_blocks=2,
                              inner_lr=0.3, verbose=0, random_state=0).meta_fit(IMAGE_TASKS),
], ids=["maml", "fomaml", "metasgd"])
def test_task_by_task_backward_gives_the_meta_batch_gradient(make):
    learner = make()
    assert not learner._vectorize()
    batch = _meta_batch(learner, IMAGE_TASKS)
    params = [p for _, p in learner.get_all_learnable_params()]
    for p in params:
        p.grad = None
    whole, whole_accuracy = learner.meta_loss(batch, training=True)
    whole.backward()
    expected = torch.cat([p.grad.flatten() for p in params])
    for p in params:
        p.grad = None
    loss, accuracy = learner._meta_backward(batch)
    got = torch.cat([p.grad.flatten() for p in params])
    torch.testing.assert_close(loss, whole.detach(), rtol=1e-6, atol=0)
    assert accuracy == pytest.approx(whole_accuracy)
    assert float((got - expected).norm()) <= 1e-5 * float(expected.norm())


def _quadratic(w):
    return (w["w"] ** 2).sum()


def test_guarded_steps_never_raise_the_loss_and_shrink_for_good():
    start = {"w": torch.tensor([1.0])}
    # lr 1.5 on w^2 maps w to -2w: plain steps diverge.
    assert inner_loop(_quadratic, start, lr=1.5, n_steps=5)["w"].item() == -32.0
    # Guarded: the first step is halved once (w -> -0.5 w, loss 0.25) and later steps keep that size.
    guarded = [inner_loop(_quadratic, start, lr=1.5, n_steps=n, guard_from=0)["w"].item() for n in range(1, 5)]
    assert guarded == [-0.5, 0.25, -0.125, 0.0625]
    # Steps before guard_from are taken as they are.
    assert inner_loop(_quadratic, start, lr=1.5, n_steps=2, guard_from=1)["w"].item() == 1.0


def test_guard_halves_through_non_finite_losses_and_stops_on_an_ascent():
    def walled(w):  # infinite beyond |w| = 10
        value = (w["w"] ** 2).sum()
        return torch.where(w["w"].abs().max() > 10, torch.tensor(float("inf")), value)

    # lr 6 from 1: -11 (inf), -5 (25), -2 (4), then -0.5 (0.25) is kept.
    assert inner_loop(walled, {"w": torch.tensor([1.0])}, lr=6.0, n_steps=1, guard_from=0)["w"].item() == -0.5

    def ascend(params, grads, loss, state):
        return {name: p + grads[name] for name, p in params.items()}, state

    start = {"w": torch.tensor([1.0, -2.0])}
    stopped = inner_loop(_quadratic, start, lr=None, n_steps=3, update=ascend, guard_from=1)
    torch.testing.assert_close(stopped["w"], torch.tensor([3.0, -6.0]))  # the unguarded first step only


def test_meta_sgd_does_not_diverge_beyond_its_meta_trained_steps():
    from skmeta import MetaSGDRegressor
    from skmeta.datasets import SinusoidTasks

    tasks = list(SinusoidTasks(n_tasks=40, k_shot=10, n_query=10, random_state=0))
    learner = MetaSGDRegressor(module__hidden_sizes=(20, 20), inner_lr=0.3, batch_size=5, max_epochs=1,
                               verbose=0, random_state=0).meta_fit(tasks)
    new = list(SinusoidTasks(n_tasks=5, k_shot=10, n_query=10, random_state=1))
    for task in new:
        losses = []
        for steps in (1, 2, 5, 20):
            fitted = learner.set_params(adapt_steps=steps).fit(task.X_support, task.y_support)
            losses.append(np.mean((fitted.predict(task.X_support) - task.y_support.numpy()) ** 2))
        assert np.all(np.isfinite(losses)) and np.all(np.diff(losses) <= 1e-6 * losses[0]), losses
    # The same learned rates unguarded: 20 steps blow up on these tasks.
    params = learner._meta_parameters(detach=True)
    rates = learner._step_size(adapting=True, detach=True)
    task = new[-1]
    with torch.no_grad():
        free = learner._adapted(params, task.X_support, task.y_support[:, None], 1, 20, rates, first_order=True)
        output = learner._forward(free, task.X_support)[:, 0]
    assert not torch.isfinite(output).all() or ((output - task.y_support) ** 2).mean() > 10 * losses[0]
