import time

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from skorch import NeuralNetClassifier

from conftest import make_subspace_classes
from skmeta import EpisodeSampler, PretrainedClassifier, ProtoNetClassifier
from skmeta.callbacks import BudgetSchedule, TimeBudget

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


class _Ticks:
    """A clock that advances ``step`` seconds at every reading: the schedule
    sees a known elapsed fraction at every batch, however fast the machine."""

    def __init__(self, step):
        self.step, self.now = step, 0.0

    def __call__(self):
        self.now += self.step
        return self.now


@given(warmup=st.floats(0, 0.99), final_factor=st.floats(0, 1), fraction=st.floats(-1, 2))
def test_schedule_factor_stays_between_final_factor_and_one(warmup, final_factor, fraction):
    factor = BudgetSchedule(1, warmup=warmup, final_factor=final_factor).lr_factor(fraction)
    assert min(final_factor, 1) - 1e-12 <= factor <= 1 + 1e-12


def test_schedule_warms_up_linearly_then_anneals_to_the_final_factor():
    schedule = BudgetSchedule(10, warmup=0.2, final_factor=0.1)
    assert schedule.lr_factor(0) == pytest.approx(0.1)
    assert schedule.lr_factor(0.1) == pytest.approx(0.55)
    assert schedule.lr_factor(0.2) == pytest.approx(1.0)
    assert schedule.lr_factor(0.6) == pytest.approx(0.55)
    assert schedule.lr_factor(1.0) == pytest.approx(0.1)
    assert schedule.lr_factor(5.0) == pytest.approx(0.1)
    rising = [schedule.lr_factor(f) for f in np.linspace(0, 0.2, 11)]
    falling = [schedule.lr_factor(f) for f in np.linspace(0.2, 1, 11)]
    assert np.all(np.diff(rising) > 0) and np.all(np.diff(falling) < 0)


def test_schedule_sets_the_learning_rate_of_each_batch_and_stops_at_the_budget():
    # Readings: 1 at train begin, then 2 per batch (begin, end). With 0.1 s a
    # reading and a 2 s budget, batch i begins at 0.2 * i + 0.1 s after the
    # start and ends at 0.2 * (i + 1): the 10th batch ends the budget.
    schedule = BudgetSchedule(2.0, warmup=0.25, final_factor=0.0, clock=_Ticks(0.1))
    tasks = EpisodeSampler(X, Y, n_way=3, k_shot=1, n_query=2, n_tasks=4, random_state=0)
    learner = ProtoNetClassifier(**SMALL, lr=0.01, max_epochs=100, callbacks=[("budget", schedule)])
    learner.meta_fit(tasks)
    lrs = [batch["lr"] for epoch in learner.history for batch in epoch["batches"]]
    expected = [0.01 * schedule.lr_factor((0.2 * i + 0.1) / 2.0) for i in range(10)]
    assert schedule.stopped_ and lrs == pytest.approx(expected)
    assert learner.optimizer_.param_groups[0]["lr"] == pytest.approx(expected[-1])


def test_schedule_restarts_from_the_initial_rate_and_follows_a_new_one():
    schedule = BudgetSchedule(1.0, warmup=0.0, clock=_Ticks(0.1))
    tasks = EpisodeSampler(X, Y, n_way=3, k_shot=1, n_query=2, n_tasks=4, random_state=0)
    learner = ProtoNetClassifier(**SMALL, lr=0.01, max_epochs=100, callbacks=[("budget", schedule)])
    learner.meta_fit(tasks)
    first = learner.history[0, "batches", 0, "lr"]
    learner.partial_meta_fit(tasks)
    assert learner.history[-1, "batches", -1, "lr"] < first
    restarted = [batch["lr"] for epoch in learner.history for batch in epoch["batches"]]
    assert restarted.count(first) == 2  # the second call began at the top again
    learner.set_params(lr=0.5)
    learner.partial_meta_fit(tasks)
    third = [batch["lr"] for epoch in learner.history for batch in epoch["batches"]][len(restarted):]
    assert third[0] == pytest.approx(0.5 * first / 0.01)


def test_schedule_works_with_a_plain_skorch_net_and_every_param_group():
    schedule = BudgetSchedule(0.2, warmup=0.5)
    module = torch.nn.Sequential(torch.nn.Linear(24, 8), torch.nn.Linear(8, 20))
    net = NeuralNetClassifier(
        module, max_epochs=10**6, batch_size=4, train_split=None, verbose=0, lr=0.1,
        optimizer__param_groups=[("0.*", {"lr": 1.0})], callbacks=[("budget", schedule)],
    )
    net.fit(X, Y)
    first, second = net.optimizer_.param_groups
    assert schedule.stopped_
    assert (first["initial_lr"], second["initial_lr"]) == (1.0, 0.1)
    assert first["lr"] / first["initial_lr"] == pytest.approx(second["lr"] / second["initial_lr"])


@pytest.mark.parametrize("params, message", [
    ({"warmup": 1.0}, r"warmup must be a number in \[0, 1\)"),
    ({"warmup": -0.1}, "warmup"),
    ({"final_factor": 1.5}, r"final_factor must be a number in \[0, 1\]"),
    ({"final_factor": "low"}, "final_factor"),
])
def test_schedule_rejects_bad_shapes(params, message):
    learner = ProtoNetClassifier(**SMALL, callbacks=[("budget", BudgetSchedule(1, **params))])
    tasks = list(EpisodeSampler(X, Y, n_way=3, k_shot=1, n_query=2, n_tasks=2, random_state=0))
    with pytest.raises(ValueError, match=message):
        learner.meta_fit(tasks)
