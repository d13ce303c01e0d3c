import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from conftest import make_subspace_classes
from skmeta import ANILClassifier, EpisodeSampler
from skmeta.datasets import SinusoidTasks, make_sinusoid

TINY = dict(module__hidden_sizes=(8,), verbose=0, random_state=0)


X_POOL, Y_POOL = make_subspace_classes(n_classes=30, n_per_class=12, n_features=10)
TASKS = list(EpisodeSampler(X_POOL[Y_POOL < 20], Y_POOL[Y_POOL < 20], n_way=3, k_shot=2, n_query=4, n_tasks=24,
                            random_state=0))
X_NEW, Y_NEW = X_POOL[Y_POOL >= 20], Y_POOL[Y_POOL >= 20]
SINE_TASKS = list(SinusoidTasks(n_tasks=24, k_shot=5, n_query=5, random_state=0))
X_SINE, Y_SINE = make_sinusoid(40, random_state=1)
PARAMS = dict(module__hidden_sizes=(16, 16), inner_lr=0.3, inner_steps=3, batch_size=4, max_epochs=1, verbose=0,
              random_state=0)


@pytest.fixture(scope="module")
def meta_fitted():
    return ANILClassifier(**PARAMS).meta_fit(TASKS)


def test_fit_adapts_the_last_linear_layer_only(meta_fitted):
    support = np.r_[0:2, 12:14, 24:26]
    meta_fitted.fit(X_NEW[support], Y_NEW[support])
    changed = {name for name, p in meta_fitted.module_.named_parameters()
               if not torch.equal(meta_fitted.adapted_params_[name], p)}
    assert changed == {"layers.4.weight", "layers.4.bias"}


def test_meta_gradient_equals_maml_restricted_to_the_head(meta_fitted):
    batch = next(iter(meta_fitted.get_iterator(meta_fitted.get_dataset(TASKS[:4]), training=True)))
    meta_fitted.module_.zero_grad(set_to_none=True)
    meta_fitted.meta_loss(batch, training=True)[0].backward()
    module = meta_fitted.module_
    params = dict(module.named_parameters())
    losses = []
    for task in batch:  # the textbook loop: full forward passes, autograd.grad on the head
        fast = {name: params[name] for name in ("layers.4.weight", "layers.4.bias")}
        for _ in range(3):
            loss = F.cross_entropy(functional_call(module, {**params, **fast}, (task.X_support,)), task.y_support)
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
            fast = {name: value - 0.3 * g for (name, value), g in zip(fast.items(), grads)}
        losses.append(F.cross_entropy(functional_call(module, {**params, **fast}, (task.X_query,)), task.y_query))
    expected = torch.autograd.grad(torch.stack(losses).mean(), list(params.values()))
    for p, e in zip(params.values(), expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-5, atol=1e-6)


class _NoLinearLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(10))

    def forward(self, X):
        return (X * self.scale)[:, :3]


def test_named_head_and_bad_heads():
    learner = ANILClassifier(**dict(PARAMS, head="layers.4")).meta_fit(TASKS[:4])
    assert learner._head_name() == "layers.4"
    with pytest.raises(ValueError, match="head='layers.9' is not a submodule with parameters of MLP"):
        ANILClassifier(**dict(PARAMS, head="layers.9")).meta_fit(TASKS[:4])
    with pytest.raises(ValueError, match="output must be its head's output; MLP transforms the output of 'layers.0'"):
        ANILClassifier(**dict(PARAMS, head="layers.0")).meta_fit(TASKS[:4])
    with pytest.raises(ValueError, match="has no nn.Linear layer to serve as head"):
        ANILClassifier(_NoLinearLayer, verbose=0).meta_fit(TASKS[:4])
