"""Data-parallel meta-training: shards of tasks, and 2 gloo processes against 1."""

import contextlib
import io
import os
import pickle
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from skmeta import MAMLClassifier, MetaSGDClassifier, ProtoNetClassifier, ReptileClassifier
from skmeta.distributed import DataParallel, init_process_group, is_main_process, shard_tasks

from conftest import subspace_tasks

N_TASKS, META_BATCH, MAX_EPOCHS = 24, 8, 2  # 3 updates per epoch, 6 in all

# ProtoNet trains with SGD: squared distances ignore a shift of the
# embedding, so the last bias has a true gradient of 0 and only rounding
# noise; Adam divides that noise by its own size and moves the bias by
# +-lr on the noise's sign, which differs between reduction orders.
LEARNERS = {
    "protonet": (ProtoNetClassifier, dict(module__out_features=8, optimizer=torch.optim.SGD, lr=0.1)),
    "maml": (MAMLClassifier, dict(module__out_features=5, first_order=False, inner_lr=0.4)),
    "reptile": (ReptileClassifier, dict(module__out_features=5, lr=0.1)),
    "metasgd": (MetaSGDClassifier, dict(module__out_features=5)),
}


def _meta_fit_all(world_size, rank, tasks):
    results = {}
    for name, (cls, kwargs) in LEARNERS.items():
        learner = cls(
            module__hidden_sizes=(16,), max_epochs=MAX_EPOCHS, batch_size=META_BATCH // world_size,
            callbacks=[DataParallel()], verbose=1,
            # Different seeds per process: rank 0's initialisation is broadcast.
            random_state=rank, **kwargs,
        )
        learner.meta_fit(shard_tasks(tasks, rank=rank, world_size=world_size))
        results[name] = {
            "params": {key: p.detach().numpy().copy() for key, p in learner.get_all_learnable_params()},
            "train_loss": learner.history[:, "train_loss"],
            "callbacks_restored": len(learner.callbacks_) == len(learner._default_callbacks) + 1,
        }
    return results


def _worker(rank, world_size, port, out_dir):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        tasks = subspace_tasks()[0][:N_TASKS]
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            results = _meta_fit_all(world_size, rank, tasks)
        results["printed"] = printed.getvalue()
        results["is_main_process"] = is_main_process()
        with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as f:
            pickle.dump(results, f)
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(out_dir)), nprocs=2, join=True)
    runs = []
    for rank in range(2):
        with open(out_dir / f"rank{rank}.pkl", "rb") as f:
            runs.append(pickle.load(f))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        single = _meta_fit_all(1, 0, subspace_tasks()[0][:N_TASKS])
    return single, runs


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_two_processes_half_batch_equal_one_process_full_batch(two_process_run, name):
    single, (rank0, rank1) = two_process_run
    for key, expected in single[name]["params"].items():
        # Every process steps with the same averaged gradient: identical.
        np.testing.assert_array_equal(rank0[name]["params"][key], rank1[name]["params"][key])
        # Against one process: the same sums, reduced in another order.
        np.testing.assert_allclose(rank0[name]["params"][key], expected, rtol=1e-5, atol=1e-6, err_msg=key)
    # The recorded loss of every epoch is the whole meta-batch's.
    np.testing.assert_allclose(rank0[name]["train_loss"], single[name]["train_loss"], rtol=1e-5)
    assert rank0[name]["callbacks_restored"] and rank1[name]["callbacks_restored"]


def test_only_rank_0_prints(two_process_run):
    _, (rank0, rank1) = two_process_run
    assert "train_loss" in rank0["printed"]
    assert rank1["printed"] == ""
    assert rank0["is_main_process"] and not rank1["is_main_process"]


def test_shards_do_not_share_tasks():
    tasks = subspace_tasks()[0][:10]
    shards = [list(shard_tasks(tasks, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    seen = [id(task) for shard in shards for task in shard]
    assert sorted(seen) == sorted(id(task) for task in tasks[:9])


@settings(max_examples=50, deadline=None)
@given(n_tasks=st.integers(0, 40), world_size=st.integers(1, 6))
def test_shards_partition_each_pass(n_tasks, world_size):
    tasks = list(range(n_tasks))
    shards = [shard_tasks(tasks, rank=r, world_size=world_size) for r in range(world_size)]
    lengths = {len(shard) for shard in shards}
    assert lengths == {n_tasks // world_size}
    merged = sorted(t for shard in shards for t in shard)
    assert merged == tasks[: n_tasks - n_tasks % world_size]
    # Re-iterable: a second pass (epoch) gives the same shard.
    assert list(shards[0]) == list(shards[0])


def test_shard_of_an_endless_stream():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    shard = iter(shard_tasks(endless(), rank=1, world_size=2))
    assert [next(shard) for _ in range(3)] == [1, 3, 5]


@pytest.mark.parametrize("rank, world_size", [(2, 2), (-1, 2), (0, 0), (0.5, 2)])
def test_shard_tasks_rejects_bad_rank(rank, world_size):
    with pytest.raises(ValueError, match="rank|world_size"):
        shard_tasks([1, 2], rank=rank, world_size=world_size)


def test_single_process_is_left_alone(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert init_process_group() == "cpu"
    assert not dist.is_initialized()
    assert is_main_process()
    tasks = subspace_tasks()[0][:16]
    with_callback = ProtoNetClassifier(module__hidden_sizes=(16,), module__out_features=8, max_epochs=1,
                                       batch_size=4, callbacks=[DataParallel()], verbose=0, random_state=0)
    without = ProtoNetClassifier(module__hidden_sizes=(16,), module__out_features=8, max_epochs=1,
                                 batch_size=4, verbose=0, random_state=0)
    with_callback.meta_fit(shard_tasks(tasks))
    without.meta_fit(tasks)
    for (key, a), (_, b) in zip(with_callback.get_all_learnable_params(), without.get_all_learnable_params()):
        assert torch.equal(a, b), key


def test_torchrun_recipe_trains_in_two_processes_and_loads_in_one(tmp_path):
    # The recipe of docs/scaling.md, small: torchrun meta-trains from the
    # command line and saves; one process loads it for cross_val_score.
    import shutil
    import subprocess
    import sys

    from sklearn.model_selection import cross_val_score

    from conftest import make_subspace_classes
    from skmeta.model_selection import EpisodicSplit

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun is not beside this Python")
    path = tmp_path / "learner.pkl"
    command = [torchrun, "--nproc_per_node=2", f"--master_port={_free_port()}", "-m", "skmeta",
               "--max-epochs", "1", "--tasks-per-epoch", "8", "--episodes", "2", "--threads", "1",
               "--save", str(path)]
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    # One report, from rank 0.
    assert run.stdout.count("saved the meta-trained learner") == 1, run.stdout
    with open(path, "rb") as f:
        learner = pickle.load(f)
    X, y = make_subspace_classes(n_features=32)
    scores = cross_val_score(learner, X, y, cv=EpisodicSplit(n_episodes=3, random_state=0))
    assert scores.shape == (3,)
