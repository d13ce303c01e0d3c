import time

import pytest
import torch
from skorch import NeuralNetClassifier

from conftest import make_subspace_classes
from skmeta import EpisodeSampler, PretrainedClassifier, ProtoNetClassifier
from skmeta.callbacks import TimeBudget

X, Y = make_subspace_classes(n_classes=20)
SMALL = dict(module__hidden_sizes=(16,), module__out_features=8, verbose=0, random_state=0)


class _SlowEpisodes:
    """A task collection whose episodes take at least `delay` seconds each to
    draw, so that budgets stop meta-training at a known point."""

    def __init__(self, n_tasks, delay):
        self.tasks = list(EpisodeSampler(X, Y, n_way=3, k_shot=1, n_query=2, n_tasks=n_tasks, random_state=0))
        self.delay = delay

    def __len__(self):
        return len(self.tasks)

    def __iter__(self):
        for task in self.tasks:
            time.sleep(self.delay)
            yield task


def test_budget_stops_meta_training_mid_epoch_after_the_budget():
    budget = TimeBudget(0.3)
    learner = ProtoNetClassifier(**SMALL, max_epochs=100, callbacks=[("budget", budget)])
    start = time.perf_counter()
    learner.meta_fit(_SlowEpisodes(n_tasks=50, delay=0.02))
    elapsed = time.perf_counter() - start
    assert budget.stopped_ and 0.3 <= budget.elapsed_ < elapsed
    # Stopped within the first epoch (50 episodes take >= 1 s); each episode
    # takes >= 0.02 s, so at most 15 fit in the budget, plus the one that ends it.
    assert len(learner.history) == 1
    assert 1 <= len(learner.history[-1, "batches"]) <= 16
    assert learner.fit(X[:6], Y[:6]).predict(X[:3]).shape == (3,)


def test_budget_larger_than_training_changes_nothing():
    tasks = list(EpisodeSampler(X, Y, n_way=3, k_shot=1, n_query=2, n_tasks=5, random_state=0))
    budget = TimeBudget(60)
    learner = ProtoNetClassifier(**SMALL, max_epochs=3, callbacks=[("budget", budget)]).meta_fit(tasks)
    assert not budget.stopped_ and len(learner.history) == 3
    reference = ProtoNetClassifier(**SMALL, max_epochs=3).meta_fit(tasks)
    for a, b in zip(learner.module_.parameters(), reference.module_.parameters()):
        assert torch.equal(a, b)


def test_budget_restarts_with_every_meta_fit_and_works_for_pretraining():
    budget = TimeBudget(0.2)
    sampler = EpisodeSampler(X, Y, n_way=3, k_shot=1, n_query=2, n_tasks=1, random_state=0)
    learner = PretrainedClassifier(**SMALL, max_epochs=10**6, batch_size=8, callbacks=[("budget", budget)])
    for _ in range(2):
        start = time.perf_counter()
        learner.meta_fit(sampler)
        assert budget.stopped_ and time.perf_counter() - start < 5


def test_budget_works_with_a_plain_skorch_net():
    budget = TimeBudget(0.2)
    net = NeuralNetClassifier(
        torch.nn.Sequential(torch.nn.Linear(24, 20)), max_epochs=10**6, batch_size=4,
        train_split=None, verbose=0, callbacks=[("budget", budget)],
    )
    net.fit(X, Y)
    assert budget.stopped_


@pytest.mark.parametrize("seconds", [0, -1, float("nan")])
def test_budget_must_be_positive(seconds):
    learner = ProtoNetClassifier(**SMALL, callbacks=[("budget", TimeBudget(seconds))])
    tasks = list(EpisodeSampler(X, Y, n_way=3, k_shot=1, n_query=2, n_tasks=2, random_state=0))
    with pytest.raises(ValueError, match="positive number of seconds"):
        learner.meta_fit(tasks)
