import numpy as np
import pytest
import torch

from skmeta.datasets import SinusoidTasks, make_sinusoid
from skmeta.tasks import Task


def test_tasks_follow_the_maml_paper_distribution():
    tasks = SinusoidTasks(n_tasks=2000, k_shot=10, n_query=15, random_state=0)
    batch = tasks.sample(2000)
    amplitude, phase = batch["amplitude"], batch["phase"]
    assert 0.1 <= amplitude.min() and amplitude.max() <= 5.0
    assert 0.0 <= phase.min() and phase.max() <= np.pi
    X = torch.cat([batch["X_support"], batch["X_query"]], 1)
    assert -5.0 <= X.min() and X.max() <= 5.0
    # uniform: means near the middle of each range
    assert abs(float(amplitude.mean()) - 2.55) < 0.1 and abs(float(phase.mean()) - np.pi / 2) < 0.1
    assert abs(float(X.mean())) < 0.05
    y = torch.cat([batch["y_support"], batch["y_query"]], 1)
    torch.testing.assert_close(y, amplitude[:, None] * torch.sin(X[..., 0] - phase[:, None]))


def test_iteration_yields_tasks_with_k_shot_support_and_n_query_queries():
    tasks = SinusoidTasks(n_tasks=300, k_shot=5, n_query=7, random_state=0)
    collected = list(tasks)
    assert len(collected) == len(tasks) == 300  # more than one vectorised chunk
    task = collected[-1]
    assert isinstance(task, Task)
    assert task.X_support.shape == (5, 1) and task.y_support.shape == (5,)
    assert task.X_query.shape == (7, 1) and task.y_query.shape == (7,)
    assert task.X_support.dtype == torch.float32


def test_same_random_state_same_tasks_and_fresh_tasks_every_pass():
    a, b = SinusoidTasks(n_tasks=4, random_state=3), SinusoidTasks(n_tasks=4, random_state=3)
    first_a, first_b = list(a), list(b)
    for ta, tb in zip(first_a, first_b):
        assert torch.equal(ta.X_support, tb.X_support) and torch.equal(ta.y_query, tb.y_query)
    second_a = list(a)
    assert not torch.equal(first_a[0].X_support, second_a[0].X_support)


def test_sample_and_iteration_share_one_stream():
    by_sample = SinusoidTasks(n_tasks=3, k_shot=2, n_query=2, random_state=0).sample(3)
    by_iteration = list(SinusoidTasks(n_tasks=3, k_shot=2, n_query=2, random_state=0))
    for i, task in enumerate(by_iteration):
        assert torch.equal(task.X_support, by_sample["X_support"][i])
        assert torch.equal(task.y_query, by_sample["y_query"][i])


def test_custom_ranges_and_bad_parameters():
    batch = SinusoidTasks(n_tasks=50, amplitude_range=(1.0, 1.0), phase_range=(0.0, 0.0), random_state=0).sample(50)
    torch.testing.assert_close(batch["y_support"], torch.sin(batch["X_support"][..., 0]))
    with pytest.raises(ValueError, match="k_shot == 0, must be >= 1"):
        SinusoidTasks(k_shot=0)
    with pytest.raises(TypeError, match="n_tasks must be an instance of int"):
        SinusoidTasks(n_tasks=2.5)
    with pytest.raises(ValueError, match=r"amplitude_range must be \(low, high\)"):
        SinusoidTasks(amplitude_range=(5.0, 0.1))


def test_make_sinusoid_gives_one_function():
    X, y = make_sinusoid(50, amplitude=3.0, phase=1.0, random_state=0)
    assert X.shape == (50, 1) and y.shape == (50,) and X.dtype == y.dtype == np.float32
    np.testing.assert_allclose(y, 3.0 * np.sin(X[:, 0] - 1.0), rtol=1e-5, atol=1e-6)
    X2, y2 = make_sinusoid(50, random_state=0)
    X3, y3 = make_sinusoid(50, random_state=0)
    np.testing.assert_array_equal(y2, y3)
    assert np.abs(y2).max() <= 5.0 and np.abs(X2).max() <= 5.0
