"""Episodic evaluation on joblib backends: serial, loky, Dask (and Ray where installed)."""

import itertools
import pickle

import joblib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from skmeta import ProtoNetClassifier
from skmeta._evaluation import _evaluation_copy
from skmeta.model_selection import EpisodicSplit, evaluate_episodes, mean_confidence_interval

from conftest import subspace_tasks

TASKS, X_NEW, Y_NEW = subspace_tasks()
CV = EpisodicSplit(n_way=5, k_shot=1, n_query=5, n_episodes=200, random_state=0)


@pytest.fixture(scope="module")
def learner():
    return ProtoNetClassifier(module__hidden_sizes=(32,), module__out_features=16, max_epochs=2,
                              lr=3e-3, verbose=0, random_state=0).meta_fit(TASKS)


@pytest.fixture(scope="module")
def serial_scores(learner):
    return cross_val_score(learner, X_NEW, Y_NEW, cv=CV)


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'dask[distributed]')")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


def test_serial_evaluation_matches_cross_val_score(learner, serial_scores):
    result = evaluate_episodes(learner, X_NEW, Y_NEW, CV)
    np.testing.assert_array_equal(result.scores, serial_scores)
    assert (result.mean, result.half_width) == mean_confidence_interval(serial_scores)
    assert result.confidence == 0.95
    assert result.fit_time.shape == result.score_time.shape == (200,)
    assert np.all(result.fit_time > 0)
    assert str(result) == f"{result.mean:.4f} +- {result.half_width:.4f}"


def test_dask_cluster_gives_the_serial_scores(learner, serial_scores, dask_client):
    result = evaluate_episodes(learner, X_NEW, Y_NEW, CV, n_jobs=-1, backend="dask")
    np.testing.assert_array_equal(result.scores, serial_scores)
    # Both worker processes took part.
    assert len(dask_client.scheduler_info()["workers"]) == 2


def test_cross_val_score_on_dask_gives_the_serial_scores(learner, serial_scores, dask_client):
    # scikit-learn's own route sends a clone per episode (about 10x the
    # per-episode cost of evaluate_episodes): the first 50 episodes keep
    # the test short.
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=5, n_episodes=50, random_state=0)
    with joblib.parallel_backend("dask"):
        scores = cross_val_score(learner, X_NEW, Y_NEW, cv=cv, n_jobs=-1)
    np.testing.assert_array_equal(scores, serial_scores[:50])


def _torch_threads(estimator, X, y):
    return torch.get_num_threads()


def test_workers_run_torch_on_the_given_threads(learner, dask_client):
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=5, n_episodes=8, random_state=0)
    result = evaluate_episodes(learner, X_NEW, Y_NEW, cv, scoring=_torch_threads, n_jobs=-1, backend="dask",
                               torch_threads=2)
    np.testing.assert_array_equal(result.scores, 2)
    # In-process runs keep the caller's setting.
    result = evaluate_episodes(learner, X_NEW, Y_NEW, cv, scoring=_torch_threads, torch_threads=2)
    np.testing.assert_array_equal(result.scores, torch.get_num_threads())


def test_ray_gives_the_serial_scores(learner, serial_scores):
    ray = pytest.importorskip("ray", reason="ray is not installed (optional: pip install ray)")
    from ray.util.joblib import register_ray

    register_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = evaluate_episodes(learner, X_NEW, Y_NEW, CV, n_jobs=2, backend="ray")
    finally:
        ray.shutdown()
    np.testing.assert_array_equal(result.scores, serial_scores)


@settings(max_examples=5, deadline=None)
@given(episodes_per_job=st.integers(1, 30), n_jobs=st.sampled_from([1, 2, 3]))
def test_grouping_of_episodes_does_not_change_scores(learner, serial_scores, episodes_per_job, n_jobs):
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=5, n_episodes=20, random_state=0)
    result = evaluate_episodes(learner, X_NEW, Y_NEW, cv, n_jobs=n_jobs, backend="threading",
                               episodes_per_job=episodes_per_job)
    np.testing.assert_array_equal(result.scores, cross_val_score(learner, X_NEW, Y_NEW, cv=cv))


def test_workers_receive_the_learner_without_its_history(learner):
    payload = _evaluation_copy(learner)
    assert len(learner.history_) == 2 and len(payload.history_) == 0
    assert payload.module_ is learner.module_
    full, slim = len(pickle.dumps(learner)), len(pickle.dumps(payload))
    assert slim < full
    # What remains is the network and the optimiser state, not task data:
    # a few times the parameters' bytes.
    n_bytes = sum(p.numel() * p.element_size() for _, p in learner.get_all_learnable_params())
    assert slim < 6 * n_bytes + 20_000


def test_episodic_split_pickles_as_its_parameters():
    cv = EpisodicSplit(n_way=3, k_shot=2, n_query=4, n_episodes=10_000, random_state=7)
    data = pickle.dumps(cv)
    assert len(data) < 400  # parameters only: no episode is drawn ahead
    restored = pickle.loads(data)
    assert repr(restored) == repr(cv) and vars(restored) == vars(cv)
    for (s1, q1), (s2, q2) in itertools.islice(zip(cv.split(X_NEW, Y_NEW), restored.split(X_NEW, Y_NEW)), 20):
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(q1, q2)


def test_progress_bar_when_verbose(capsys):
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=5, n_episodes=20, random_state=0)
    evaluate_episodes(KNeighborsClassifier(n_neighbors=1), X_NEW, Y_NEW, cv, verbose=1)
    assert "20/20" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, match", [
    (dict(episodes_per_job=0), "episodes_per_job"),
    (dict(episodes_per_job="many"), "episodes_per_job"),
    (dict(torch_threads=0), "torch_threads"),
    (dict(cv=EpisodicSplit(n_episodes=1, random_state=0)), "at least 2 episodes"),
])
def test_bad_arguments_raise(kwargs, match):
    kwargs = {"cv": CV, **kwargs}
    with pytest.raises(ValueError, match=match):
        evaluate_episodes(KNeighborsClassifier(n_neighbors=1), X_NEW, Y_NEW, **kwargs)
