import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import clone

from conftest import make_subspace_classes
from skmeta import EpisodeSampler, ReptileClassifier, ReptileRegressor
from skmeta.datasets import SinusoidTasks, make_sinusoid

TINY = dict(module__hidden_sizes=(8,), verbose=0, random_state=0)


X_POOL, Y_POOL = make_subspace_classes(n_classes=30, n_per_class=12, n_features=10)
TASKS = list(EpisodeSampler(X_POOL[Y_POOL < 20], Y_POOL[Y_POOL < 20], n_way=3, k_shot=2, n_query=4, n_tasks=24,
                            random_state=0))
X_NEW, Y_NEW = X_POOL[Y_POOL >= 20], Y_POOL[Y_POOL >= 20]
SINE_TASKS = list(SinusoidTasks(n_tasks=24, k_shot=5, n_query=5, random_state=0))
X_SINE, Y_SINE = make_sinusoid(40, random_state=1)
PARAMS = dict(module__hidden_sizes=(16,), inner_lr=0.1, batch_size=4, max_epochs=1, verbose=0, random_state=0)


def _one_step_definition(module, batch, inner_lr, meta_lr):
    """theta + meta_lr * mean_tasks(phi - theta), phi one SGD step on all the task's examples."""
    params = [p.detach() for p in module.parameters()]
    names = [name for name, _ in module.named_parameters()]
    adapted = []
    for task in batch:
        X, y = torch.cat([task.X_support, task.X_query]), torch.cat([task.y_support, task.y_query])
        theta = [p.clone().requires_grad_() for p in params]
        loss = F.cross_entropy(torch.func.functional_call(module, dict(zip(names, theta)), (X,)), y)
        grads = torch.autograd.grad(loss, theta)
        adapted.append([p - inner_lr * g for p, g in zip(params, grads)])
    mean_phi = [torch.stack(phis).mean(0) for phis in zip(*adapted)]
    return [p + meta_lr * (phi - p) for p, phi in zip(params, mean_phi)]


def test_update_equals_its_definition_on_one_step():
    learner = ReptileClassifier(**dict(PARAMS, inner_steps=1, lr=0.5)).meta_fit(TASKS)
    batch = next(iter(learner.get_iterator(learner.get_dataset(TASKS[:4]), training=True)))
    expected = _one_step_definition(learner.module_, batch, inner_lr=0.1, meta_lr=0.5)
    learner.train_step(batch)  # skorch's step: zero_grad, meta_loss, backward, SGD step
    for p, e in zip(learner.module_.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)


def test_meta_validation_loss_is_the_query_loss_after_fit():
    learner = ReptileClassifier(**PARAMS).meta_fit(TASKS)
    batch = next(iter(learner.get_iterator(learner.get_dataset(TASKS[:2]), training=False)))
    loss, accuracy = learner.meta_loss(batch, training=False)
    losses, correct = [], 0
    for task in TASKS[:2]:
        proba = clone(learner).fit(task.X_support, task.y_support).predict_proba(task.X_query)
        losses.append(-np.log(proba[np.arange(len(task.y_query)), task.y_query.numpy()]).mean())
        correct += (proba.argmax(1) == task.y_query.numpy()).sum()
    np.testing.assert_allclose(float(loss), np.mean(losses), rtol=1e-5)
    assert accuracy == correct / (2 * len(TASKS[0].y_query))


def test_sgd_is_the_default_outer_optimizer():
    learner = ReptileRegressor(verbose=0)
    assert learner.optimizer is torch.optim.SGD and learner.lr == 0.1
    assert clone(ReptileRegressor(lr=0.5)).lr == 0.5
