"""Meta-training is safe against bad data, transactional and resumable:
bad tasks are refused before they reach a weight, a failed call leaves the
learner as it was, Ctrl-C says what it kept, and a run resumed from its
checkpoint ends bit-identical to the uninterrupted one."""

import copy
import os
import pickle
import threading
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skorch.callbacks import Callback, Checkpoint

from conftest import make_relevance_dataset, make_subspace_classes
from skmeta import (
    ANILClassifier,
    ANILRegressor,
    EpisodeSampler,
    FeatureVoteClassifier,
    MAMLClassifier,
    MAMLRegressor,
    MANNClassifier,
    MatchingNetworkClassifier,
    MetaLSTMClassifier,
    MetaLSTMRegressor,
    MetaSGDClassifier,
    MetaSGDRegressor,
    PretrainedClassifier,
    ProtoNetClassifier,
    RelationNetworkClassifier,
    ReptileClassifier,
    ReptileRegressor,
    SiameseNetworkClassifier,
    Task,
)
from skmeta.base import MetaTrainingInterruptedWarning
from skmeta.tasks import DatasetCollection, SinusoidTasks
from skmeta.utils._torch import all_finite
from skmeta.utils.estimator_checks import meta_state

X_POOL, Y_POOL = make_subspace_classes(n_classes=20, n_per_class=10, n_features=12)
SAMPLER = dict(n_way=3, k_shot=2, n_query=3, n_tasks=8)
METRIC = dict(module__hidden_sizes=(16,), module__out_features=8)
OPT = dict(module__hidden_sizes=(16,), inner_lr=0.1, batch_size=2)
SINE = dict(OPT, inner_lr=0.01)
COMMON = dict(max_epochs=1, batch_size=2, verbose=0, random_state=0)

# Every estimator configuration, with a seeded task collection of its kind.
CONFIGS = {
    "protonet": (ProtoNetClassifier, METRIC, "classes"),
    "matching": (MatchingNetworkClassifier, METRIC, "classes"),
    "matching_fce": (MatchingNetworkClassifier, dict(METRIC, fce=True, fce_steps=2), "classes"),
    "siamese": (SiameseNetworkClassifier, METRIC, "classes"),
    "relation": (RelationNetworkClassifier, dict(METRIC, relation__hidden_sizes=(8,)), "classes"),
    "pretrained": (PretrainedClassifier, dict(METRIC, batch_size=16), "classes"),
    "mann": (MANNClassifier, dict(module__controller_size=16, module__memory_rows=8, module__memory_width=4,
                                  module__n_way=3), "classes"),
    "featurevote": (FeatureVoteClassifier, dict(module__hidden_size=8), "datasets"),
    "maml": (MAMLClassifier, OPT, "classes"),
    "fomaml": (MAMLClassifier, dict(OPT, first_order=True), "classes"),
    "maml_regressor": (MAMLRegressor, SINE, "sine"),
    "metasgd": (MetaSGDClassifier, OPT, "classes"),
    "metasgd_regressor": (MetaSGDRegressor, SINE, "sine"),
    "anil": (ANILClassifier, dict(OPT, module__hidden_sizes=(16, 16)), "classes"),
    "anil_regressor": (ANILRegressor, dict(SINE, module__hidden_sizes=(16, 16)), "sine"),
    "reptile": (ReptileClassifier, OPT, "classes"),
    "reptile_regressor": (ReptileRegressor, SINE, "sine"),
    "metalstm": (MetaLSTMClassifier, dict(OPT, inner_steps=2), "classes"),
    "metalstm_regressor": (MetaLSTMRegressor, dict(SINE, inner_steps=2), "sine"),
}


def _learner(name, **params):
    cls, config, _ = CONFIGS[name]
    return cls(**{**COMMON, **config, **params})


def _tasks(name, seed=0):
    kind = CONFIGS[name][2]
    if kind == "sine":
        return SinusoidTasks(n_tasks=8, k_shot=4, n_query=4, random_state=seed)
    if kind == "datasets":
        datasets = [make_relevance_dataset(d, random_state=i) for i, d in enumerate((5, 7, 9))]
        return DatasetCollection(datasets, n_way=(2, 3), k_shot=(1, 2), n_query=3, n_tasks=8, random_state=seed)
    return EpisodeSampler(X_POOL, Y_POOL, **SAMPLER, random_state=seed)


def _bad_copy(task, where, value):
    """The task with ``value`` written into one entry of ``where``."""
    task = copy.deepcopy(task)
    value_before = getattr(task, where)
    array = np.array(value_before.numpy() if torch.is_tensor(value_before) else value_before, dtype=np.float64)
    array.reshape(-1)[1] = value
    setattr(task, where, array)
    return task


def _same_state(a_dict, b_dict):
    assert a_dict.keys() == b_dict.keys()
    for key in a_dict:
        assert torch.equal(a_dict[key], b_dict[key]), key


# ----------------------------------------------------------------------
# bad data never reaches the weights
# ----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("where, value", [("X_support", np.nan), ("X_query", np.inf), ("X_support", -np.inf),
                                          ("X_query", 1e39)])
def test_non_finite_task_is_refused_and_changes_nothing(name, where, value):
    learner = _learner(name).meta_fit(_tasks(name))
    before, history = meta_state(learner), len(learner.history)
    tasks = list(_tasks(name, seed=1))
    tasks[3] = _bad_copy(tasks[3], where, value)
    for call in (learner.meta_fit, learner.partial_meta_fit):
        with pytest.raises(ValueError, match=r"task 3 of the collection: .*(NaN|infinite)"):
            call(tasks)
        _same_state(before, meta_state(learner))
        assert len(learner.history) == history


@pytest.mark.parametrize("name", ["protonet", "maml_regressor"])
def test_non_finite_labels_and_validation_tasks_are_refused(name):
    learner = _learner(name)
    tasks = list(_tasks(name))
    bad = copy.deepcopy(tasks[0])
    bad.y_query = np.where(np.arange(len(bad.y_query)) == 0, np.nan, np.asarray(bad.y_query, dtype=float))
    with pytest.raises(ValueError, match="NaN|infinite|absent"):
        learner.meta_fit(tasks[1:] + [bad])
    with pytest.raises(ValueError, match="validation task 1"):
        learner.meta_fit(tasks, val_tasks=[tasks[0], _bad_copy(tasks[1], "X_query", np.nan)])
    assert not learner._is_meta_fitted()


class _HoldsALock(Callback):
    """A callback that cannot be deep-copied, as a TensorBoard writer cannot."""

    def initialize(self):
        self.lock_ = threading.Lock()
        return self


@pytest.mark.parametrize("name", ["protonet", "maml", "mann"])
def test_a_learner_that_cannot_be_copied_is_still_restored(name):
    learner = _learner(name, callbacks=[_HoldsALock()], warm_start=True).meta_fit(_tasks(name))
    before, history = meta_state(learner), len(learner.history)
    tasks = list(_tasks(name, seed=1))
    tasks[5] = _bad_copy(tasks[5], "X_query", np.nan)
    for call in (learner.meta_fit, learner.partial_meta_fit):
        with pytest.raises(ValueError, match="task 5 of the collection"):
            call(tasks)
        _same_state(before, meta_state(learner))
        assert len(learner.history) == history
    learner.partial_meta_fit(_tasks(name, seed=2))  # and it trains on from there
    assert len(learner.history) == history + 1


def test_huge_values_fail_cleanly_instead_of_nan_weights():
    learner = _learner("protonet").meta_fit(_tasks("protonet"))
    before = meta_state(learner)
    tasks = [Task(t.X_support * 1e30, t.y_support, t.X_query * 1e30, t.y_query) for t in _tasks("protonet", 1)]
    with pytest.raises(ValueError, match="non-finite"):
        learner.meta_fit(tasks)
    _same_state(before, meta_state(learner))
    assert all(torch.isfinite(v).all() for v in meta_state(learner).values())


def test_task_of_another_width_is_named():
    tasks = list(_tasks("protonet"))
    other = Task(np.zeros((6, 5)), [0, 0, 1, 1, 2, 2], np.zeros((9, 5)), [0, 0, 0, 1, 1, 1, 2, 2, 2])
    with pytest.raises(ValueError, match="task 5 of the collection: the task has 5 features"):
        _learner("protonet").meta_fit(tasks[:5] + [other])


@pytest.mark.parametrize("task, error, match", [
    (Task(np.zeros(6), [0, 0, 1, 1, 2, 2], np.zeros((3, 1)), [0, 1, 2]), ValueError, "X_support must have"),
    (Task(np.zeros((6, 12)), [0, 0, 1, 1, "a", "a"], np.zeros((3, 12)), [0, 1, 1]), TypeError, "mixes label types"),
    (Task(np.zeros((6, 12)) + 1j, [0, 0, 1, 1, 2, 2], np.zeros((3, 12)), [0, 1, 2]), TypeError, "complex"),
    (Task(np.zeros((6, 12)), [0, 0, 1, 1, 2], np.zeros((3, 12)), [0, 1, 2]), ValueError, "5 labels for 6"),
    (Task(np.zeros((6, 12)), [0, 0, 1, 1, 2, 2], np.zeros((3, 11)), [0, 1, 2]), ValueError, "differ"),
    (Task(np.zeros((6, 12)), [0, 0, 1, 1, 2, 2], np.zeros((3, 12)), None), ValueError, "query labels"),
])
def test_malformed_tasks_get_clear_errors(task, error, match):
    with pytest.raises(error, match=match):
        _learner("protonet").meta_fit([task])


@pytest.mark.parametrize("tasks, error", [("abc", TypeError), (np.zeros((4, 3)), TypeError), ([], ValueError),
                                          ([1, 2], TypeError)])
def test_what_is_not_a_task_collection_is_refused(tasks, error):
    with pytest.raises(error):
        _learner("protonet").meta_fit(tasks)


def test_pools_refuse_infinite_and_overflowing_values():
    X = X_POOL.copy()
    for value in (np.inf, 1e39):
        X[3, 2] = value
        with pytest.raises(ValueError, match="infinite"):
            EpisodeSampler(X, Y_POOL, **SAMPLER)
        with pytest.raises(ValueError, match="infinite"):
            DatasetCollection([(X, Y_POOL)], n_way=3, k_shot=2, n_query=3)
    with pytest.raises(TypeError, match="complex"):
        EpisodeSampler(X_POOL + 1j, Y_POOL, **SAMPLER)


# ----------------------------------------------------------------------
# interruption and resume
# ----------------------------------------------------------------------
class _CtrlC(Callback):
    """Raises KeyboardInterrupt after ``at`` meta-batches, as Ctrl-C does."""

    def __init__(self, at):
        self.at = at

    def on_batch_end(self, net, training=False, **kwargs):
        if training and len(net.history[-1, "batches"]) == self.at:
            raise KeyboardInterrupt


class _InSecondEpoch(_CtrlC):
    def on_batch_end(self, net, training=False, **kwargs):
        if len(net.history) == 2:
            super().on_batch_end(net, training=training, **kwargs)


def test_ctrl_c_keeps_the_updates_and_says_so():
    learner = _learner("protonet", max_epochs=3, callbacks=[_InSecondEpoch(at=3)])
    with pytest.warns(MetaTrainingInterruptedWarning, match="epoch 2, meta-batch 3"):
        learner.meta_fit(_tasks("protonet"))
    assert learner.history[-1, "interrupted"] == "epoch 2, batch 3"
    assert len(learner.history) == 2
    assert learner._is_meta_fitted()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_resume_from_checkpoint_is_bit_identical(name, tmp_path):
    uninterrupted = _learner(name, max_epochs=3).meta_fit(_tasks(name))
    checkpoint = Checkpoint(dirname=str(tmp_path), monitor=None, f_params=None, f_optimizer=None,
                            f_criterion=None, f_history=None, f_pickle="learner.pkl")
    _learner(name, max_epochs=2, callbacks=[checkpoint]).meta_fit(_tasks(name))
    with open(tmp_path / "learner.pkl", "rb") as f:
        resumed = pickle.load(f)
    resumed.partial_meta_fit(_tasks(name), epochs=1)  # a fresh collection with the same seed
    _same_state(meta_state(uninterrupted), meta_state(resumed))
    assert len(resumed.history) == 3


def test_partial_meta_fit_continues_the_sampler_without_skipping():
    # Two calls of one epoch each see the episodes of one two-epoch call.
    once = _learner("protonet", max_epochs=2).meta_fit(_tasks("protonet"))
    twice = _learner("protonet", max_epochs=1)
    tasks = _tasks("protonet")
    twice.meta_fit(tasks)
    twice.partial_meta_fit(tasks)
    _same_state(meta_state(once), meta_state(twice))


# ----------------------------------------------------------------------
# the global random stream under threads
# ----------------------------------------------------------------------
def test_threads_leave_the_global_random_stream_alone():
    learners = [_learner(name).meta_fit(_tasks(name)) for name in ("protonet", "maml", "mann")]
    X, y = X_POOL[:12], np.repeat([0, 1, 2], 4)
    serial = [learner.fit(X, y).predict_proba(X_POOL[12:20]) for learner in learners]
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    results, errors = {}, []

    def work(i):
        try:
            for _ in range(10):
                twin = copy.deepcopy(learners[i % 3])
                results[i] = twin.fit(X, y).predict_proba(X_POOL[12:20])
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert torch.equal(torch.rand(3), expected), "the global stream changed"
    for i, result in results.items():
        np.testing.assert_array_equal(result, serial[i % 3])


# ----------------------------------------------------------------------
# property-based: any bad task, a clear error or a finite result
# ----------------------------------------------------------------------
settings.register_profile("ci", max_examples=15, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("long", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

POISON = st.sampled_from([np.nan, np.inf, -np.inf, 1e39, -1e39, 1e30, 1e20, 0.0, -3.0])


@st.composite
def bad_tasks(draw):
    n_way = draw(st.integers(1, 4))
    k_shot = draw(st.integers(1, 3))
    n_query = draw(st.integers(0, 3))
    width = draw(st.sampled_from([12, 12, 12, 5, 0]))
    query_width = draw(st.sampled_from([width, width, width + 1]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    X_support = np.random.RandomState(draw(st.integers(0, 9))).randn(n_way * k_shot, max(width, 1)).astype(dtype)
    if width == 0:
        X_support = X_support[:, :0]
    X_query = np.random.RandomState(1).randn(n_way * n_query, max(query_width, 1))[:, :query_width]
    for _ in range(draw(st.integers(0, 2))):
        target = draw(st.sampled_from(["support", "query"]))
        array = X_support if target == "support" else X_query
        if array.size:
            array.reshape(-1)[draw(st.integers(0, array.size - 1))] = draw(POISON)
    y_support = np.repeat(np.arange(n_way), k_shot)
    y_query = np.repeat(np.arange(n_way), n_query)
    if draw(st.booleans()):
        y_query = y_query + draw(st.sampled_from([0, 1, 10]))
    return Task(X_support, y_support, X_query, y_query)


@pytest.mark.parametrize("name", ["protonet", "maml", "mann", "relation", "pretrained", "featurevote"])
@given(task=bad_tasks())
def test_any_task_gives_a_clear_error_or_finite_weights(name, task):
    learner = FITTED[name]
    before = meta_state(learner)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            learner.partial_meta_fit([task], epochs=1)
    except (ValueError, TypeError):
        _same_state(before, meta_state(learner))
    else:
        assert all(torch.isfinite(v).all() for v in meta_state(learner).values())
        FITTED[name] = _learner(name).meta_fit(_tasks(name))  # the next example starts from the same learner


FITTED = {name: _learner(name).meta_fit(_tasks(name)) for name in
          ["protonet", "maml", "mann", "relation", "pretrained", "featurevote"]}


@settings(max_examples=50, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    poison=st.sampled_from([None, float("nan"), float("inf"), -float("inf"), 3e38]),
    where=st.integers(0, 100),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
)
def test_all_finite_flags_exactly_the_non_finite_tensor_groups(sizes, poison, where, dtype):
    # The one flag each meta-update reads: true exactly when every value is
    # finite, whatever the dtypes mixed in the list (huge finite values are
    # finite: a sum would overflow, a largest magnitude does not).
    tensors = [torch.randn(n, dtype=dtype) for n in sizes] + [None, torch.arange(3)]
    if poison is not None:
        flat = [t for t in tensors[: len(sizes)]]
        target = flat[where % len(flat)]
        target[where % len(target)] = poison
    flag = all_finite(tensors)
    assert flag.dim() == 0 and flag.dtype == torch.bool
    expected = all(bool(t.isfinite().all()) for t in tensors[: len(sizes)])
    assert bool(flag) == expected
