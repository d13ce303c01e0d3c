import numpy as np
import torch

from conftest import make_subspace_classes
from skmeta import EpisodeSampler, MAMLClassifier, MetaSGDClassifier
from skmeta.datasets import SinusoidTasks, make_sinusoid
from skmeta.utils.estimator_checks import meta_state

TINY = dict(module__hidden_sizes=(8,), verbose=0, random_state=0)


X_POOL, Y_POOL = make_subspace_classes(n_classes=30, n_per_class=12, n_features=10)
TASKS = list(EpisodeSampler(X_POOL[Y_POOL < 20], Y_POOL[Y_POOL < 20], n_way=3, k_shot=2, n_query=4, n_tasks=24,
                            random_state=0))
X_NEW, Y_NEW = X_POOL[Y_POOL >= 20], Y_POOL[Y_POOL >= 20]
SINE_TASKS = list(SinusoidTasks(n_tasks=24, k_shot=5, n_query=5, random_state=0))
X_SINE, Y_SINE = make_sinusoid(40, random_state=1)
PARAMS = dict(module__hidden_sizes=(16,), inner_lr=0.3, batch_size=4, max_epochs=1, verbose=0, random_state=0)


def test_constant_learned_step_sizes_equal_maml():
    maml = MAMLClassifier(**PARAMS, inner_steps=2).meta_fit(TASKS)
    meta_sgd = MetaSGDClassifier(**PARAMS, inner_steps=2).meta_fit(TASKS)
    meta_sgd.module_.load_state_dict(maml.module_.state_dict())
    with torch.no_grad():
        for rate in meta_sgd.inner_lrs_.parameters():
            rate.fill_(0.3)
    batch = next(iter(maml.get_iterator(maml.get_dataset(TASKS[:4]), training=True)))
    gradients = []
    for learner in (maml, meta_sgd):
        learner.module_.zero_grad(set_to_none=True)
        learner.meta_loss(batch, training=True)[0].backward()
        gradients.append([p.grad for p in learner.module_.parameters()])
    for a, b in zip(*gradients):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    support = np.r_[0:2, 12:14, 24:26]
    expected = maml.fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[30:60])
    np.testing.assert_allclose(meta_sgd.fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[30:60]), expected,
                               rtol=1e-6)


def test_step_sizes_are_meta_learned_per_weight_and_cloned():
    learner = MetaSGDClassifier(**dict(PARAMS, max_epochs=2)).meta_fit(TASKS)
    rates = torch.cat([rate.detach().flatten() for rate in learner.inner_lrs_.parameters()])
    assert rates.numel() == sum(p.numel() for p in learner.module_.parameters())
    assert rates.std() > 1e-4 and not torch.allclose(rates, torch.tensor(0.3))
    state = meta_state(learner)
    assert any(key.startswith("inner_lrs.rates.") for key in state)
    optimised = {id(p) for group in learner.optimizer_.param_groups for p in group["params"]}
    assert all(id(rate) in optimised for rate in learner.inner_lrs_.parameters())


def test_adaptation_uses_the_learned_step_sizes():
    learner = MetaSGDClassifier(**PARAMS).meta_fit(TASKS)
    support = np.r_[0:2, 12:14, 24:26]
    learner.fit(X_NEW[support], Y_NEW[support])
    before = learner.predict_proba(X_NEW[30:40])
    with torch.no_grad():
        for rate in learner.inner_lrs_.parameters():
            rate.zero_()
    frozen = learner.fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[30:40])
    with torch.no_grad():
        logits = learner.module_(torch.as_tensor(X_NEW[30:40]))
    np.testing.assert_allclose(frozen, torch.softmax(logits, 1).numpy(), rtol=1e-6)
    assert np.abs(before - frozen).max() > 1e-4
