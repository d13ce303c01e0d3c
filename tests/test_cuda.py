"""device="cuda": meta_fit, fit, predict on a GPU, and a CUDA-trained learner loaded on CPU.

Skipped without a GPU; benchmarks/gpu_check.py runs the same for every
estimator, with Conv-4 and bfloat16.
"""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from skmeta import MAMLClassifier, MANNClassifier, ProtoNetClassifier, ReptileRegressor
from skmeta.datasets import SinusoidTasks

from conftest import subspace_tasks

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")

TASKS, X_NEW, Y_NEW = subspace_tasks()
SUPPORT = np.concatenate([np.flatnonzero(Y_NEW == c)[:2] for c in np.unique(Y_NEW)[:5]])
QUERY = np.concatenate([np.flatnonzero(Y_NEW == c)[2:7] for c in np.unique(Y_NEW)[:5]])
LEARNERS = [
    ProtoNetClassifier(module__hidden_sizes=(32,), module__out_features=16),
    MAMLClassifier(module__hidden_sizes=(32,), inner_lr=0.4),
    MANNClassifier(module__controller_size=16, module__memory_rows=8, module__memory_width=8, module__n_way=5),
]


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("learner", LEARNERS, ids=lambda learner: type(learner).__name__)
def test_cuda_learner_trains_adapts_and_loads_on_cpu(learner, precision, tmp_path):
    learner = learner.set_params(device="cuda", precision=precision, max_epochs=1, batch_size=4, verbose=0,
                                 random_state=0).meta_fit(TASKS[:16])
    assert {p.device.type for _, p in learner.get_all_learnable_params()} == {"cuda"}
    learner.fit(X_NEW[SUPPORT], Y_NEW[SUPPORT])
    on_gpu = learner.predict(X_NEW[QUERY])
    path = tmp_path / "learner.pkl"
    path.write_bytes(pickle.dumps(learner))
    code = ("import pickle, sys, numpy as np; learner = pickle.load(open(sys.argv[1], 'rb')); "
            "np.save(sys.argv[2], learner.predict(np.load(sys.argv[3])))")
    np.save(tmp_path / "X.npy", X_NEW[QUERY])
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    run = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "cpu.npy"), str(tmp_path / "X.npy")],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert np.mean(np.load(tmp_path / "cpu.npy") == on_gpu) >= 0.9


def test_cuda_regressor_predicts_on_the_gpu():
    tasks = list(SinusoidTasks(n_tasks=8, k_shot=5, n_query=5, random_state=0))
    learner = ReptileRegressor(module__hidden_sizes=(16,), device="cuda", max_epochs=1, batch_size=4, verbose=0,
                               random_state=0).meta_fit(tasks)
    task = tasks[0]
    prediction = learner.fit(task.X_support, task.y_support).predict(task.X_query)
    assert prediction.shape == (len(task.X_query),) and np.all(np.isfinite(prediction))
