"""A meta-fitted, adapted learner shared by threads: predictions equal the
serial ones and the meta-parameters stay bit-identical.

The optimisation family runs its network with ``torch.func.functional_call``,
which swaps tensors into the module it runs on; before it ran on a private
skeleton, two threads predicting with one MAML learner read each other's
adapted weights and could leave them in place of the meta-parameters.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from sklearn.base import is_classifier

from conftest import make_subspace_classes
from skmeta import (
    ANILClassifier,
    EpisodeSampler,
    MAMLClassifier,
    MAMLRegressor,
    MatchingNetworkClassifier,
    MetaSGDClassifier,
    ProtoNetClassifier,
    RelationNetworkClassifier,
    ReptileClassifier,
    SiameseNetworkClassifier,
)
from skmeta.datasets import SinusoidTasks
from skmeta.memory import MANNClassifier
from skmeta.metric import PretrainedClassifier
from skmeta.modules import MLP
from skmeta.tabular import FeatureVoteClassifier
from skmeta.utils.estimator_checks import assert_meta_state_equal, meta_state

N_THREADS, N_ROUNDS = 4, 200
TINY = dict(module__hidden_sizes=(16,), max_epochs=1, verbose=0, random_state=0)


def _classification_data():
    X, y = make_subspace_classes(n_classes=12, n_per_class=12, n_features=8)
    train = y < 8
    tasks = list(EpisodeSampler(X[train], y[train], n_way=3, k_shot=2, n_query=3, n_tasks=8, random_state=0))
    support = np.concatenate([np.flatnonzero(y == c)[:2] for c in (8, 9, 10)])
    query = np.concatenate([np.flatnonzero(y == c)[2:8] for c in (8, 9, 10)])
    return tasks, (X[support], y[support]), X[query]


TASKS, SUPPORT, QUERY = _classification_data()
LEARNERS = {
    "protonet": lambda: ProtoNetClassifier(module__out_features=8, **TINY),
    "matching_fce": lambda: MatchingNetworkClassifier(module__out_features=8, fce=True, fce_steps=2, **TINY),
    "relation": lambda: RelationNetworkClassifier(module__out_features=8, relation__hidden_sizes=(8, 4), **TINY),
    "siamese": lambda: SiameseNetworkClassifier(module__out_features=8, **TINY),
    "pretrained": lambda: PretrainedClassifier(module__out_features=8, **TINY),
    # Second order through per-task batch norm: the forward pass that
    # normalises queries with support statistics runs in every prediction.
    "maml_second_order_task_batch_norm": lambda: MAMLClassifier(
        module=MLP, module__batch_norm=True, inner_lr=0.1, inner_steps=2, batch_size=2, **TINY
    ),
    "meta_sgd": lambda: MetaSGDClassifier(inner_lr=0.1, batch_size=2, **TINY),
    "anil": lambda: ANILClassifier(inner_lr=0.1, batch_size=2, **TINY),
    "reptile": lambda: ReptileClassifier(inner_lr=0.1, batch_size=2, **TINY),
    "mann": lambda: MANNClassifier(
        module__n_way=3, module__controller_size=8, module__memory_rows=8, module__memory_width=4,
        module__n_reads=1, batch_size=4, max_epochs=1, verbose=0, random_state=0,
    ),
    "featurevote": lambda: FeatureVoteClassifier(module__hidden_size=8, max_epochs=1, verbose=0, random_state=0),
}


def _shared_learner(name):
    learner = LEARNERS[name]().meta_fit(TASKS)
    return learner.fit(*SUPPORT), QUERY


def _shared_regressor():
    tasks = SinusoidTasks(n_tasks=8, k_shot=5, n_query=5, random_state=0)
    learner = MAMLRegressor(module__hidden_sizes=(16,), inner_lr=0.01, batch_size=4, max_epochs=1,
                            verbose=0, random_state=0).meta_fit(tasks)
    task = next(iter(SinusoidTasks(n_tasks=1, k_shot=5, n_query=20, random_state=1)))
    return learner.fit(task.X_support, task.y_support), task.X_query


def _assert_thread_safe(learner, X):
    predict = learner.predict_proba if is_classifier(learner) else learner.predict
    before = meta_state(learner)
    expected = predict(X)
    # Rounds of N_THREADS concurrent calls; each call a different slice, so
    # that a thread reading another's intermediate state shows as a wrong
    # answer, not only as a wrong weight.
    slices = [slice(i, len(X) - (N_THREADS - 1) + i) for i in range(N_THREADS)]
    with ThreadPoolExecutor(N_THREADS) as pool:
        for _ in range(N_ROUNDS):
            futures = [pool.submit(predict, X[part]) for part in slices]
            for part, future in zip(slices, futures):
                np.testing.assert_allclose(future.result(), expected[part], rtol=1e-5, atol=1e-6)
    assert_meta_state_equal(meta_state(learner), before)
    np.testing.assert_array_equal(predict(X), expected)


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_threads_predicting_with_one_learner(name):
    _assert_thread_safe(*_shared_learner(name))


def test_threads_predicting_with_one_regressor():
    _assert_thread_safe(*_shared_regressor())


def test_functional_forward_never_runs_on_the_module():
    from skmeta.optimization import functional_forward

    layer = torch.nn.Linear(3, 2)
    state = {key: value.clone() for key, value in layer.state_dict().items()}
    ran_on = []
    layer.register_forward_pre_hook(lambda module, args: ran_on.append(module))
    zero = {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}
    assert torch.equal(functional_forward(layer, zero, torch.ones(4, 3)), torch.zeros(4, 2))
    # The call ran on a private copy (the hooks come with it), so no other
    # thread can have seen the zero weights in ``layer``.
    assert len(ran_on) == 1 and ran_on[0] is not layer
    for key, value in layer.state_dict().items():
        assert torch.equal(value, state[key])
