"""Every estimator on a GPU: meta_fit, fit, predict, and a CUDA-trained learner loaded on CPU.

    python benchmarks/gpu_check.py                 # on a machine with CUDA
    python benchmarks/gpu_check.py --device cpu    # the same checks on CPU (dry run)

For each estimator and precision (float32, bfloat16 autocast) it meta-fits
on small generated tasks (Omniglot-shaped 1x28x28 images with Conv-4 for
some learners, vectors with an MLP for the others, sinusoids for the
regressors), checks that the meta-parameters live on the device, adapts and
predicts there, then pickles the learner twice (meta-fitted only, and
fitted to a support set) and loads both in a separate process that sees no
GPU (CUDA_VISIBLE_DEVICES=""): the meta-fitted one must adapt and predict
there, the fitted one must predict what it predicted on the GPU. Last, the
data-parallel callback on device tensors: 2 processes x meta-batch 2 against
1 process x meta-batch 4 (gloo on one GPU; nccl too when there are two).
Prints a pass/fail table and exits 1 if anything failed. A few seconds per
row on one GPU; about a minute in all.
"""

import argparse
import json
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np
import torch

from skmeta import (
    ANILClassifier,
    ANILRegressor,
    EpisodeSampler,
    FeatureVoteClassifier,
    InContextClassifier,
    MAMLClassifier,
    MAMLRegressor,
    MANNClassifier,
    MetaLSTMClassifier,
    MetaLSTMRegressor,
    MatchingNetworkClassifier,
    MetaSGDClassifier,
    MetaSGDRegressor,
    PretrainedClassifier,
    ProtoNetClassifier,
    RelationNetworkClassifier,
    ReptileClassifier,
    ReptileRegressor,
    SiameseNetworkClassifier,
)
from skmeta.datasets import SinusoidTasks, make_subspace_classification
from skmeta.modules import Conv4

MLP_NET = dict(module__hidden_sizes=(32,))
OPT = dict(inner_lr=0.1, inner_steps=1)
# (estimator, constructor arguments, data): "images" 1x28x28 with Conv-4,
# "vectors" 24 features, "sine" the sinusoid regression family.
ESTIMATORS = [
    (ProtoNetClassifier, dict(module=Conv4), "images"),
    (MatchingNetworkClassifier, dict(module=Conv4), "images"),
    (MatchingNetworkClassifier, dict(MLP_NET, module__out_features=16, fce=True, fce_steps=2), "vectors"),
    (SiameseNetworkClassifier, dict(MLP_NET, module__out_features=16), "vectors"),
    (RelationNetworkClassifier, dict(MLP_NET, module__out_features=16, relation__hidden_sizes=(8,)), "vectors"),
    (PretrainedClassifier, dict(MLP_NET, module__out_features=16), "vectors"),
    (MAMLClassifier, dict(module=Conv4, **OPT), "images"),
    (MAMLClassifier, dict(MLP_NET, first_order=True, **OPT), "vectors"),
    (MetaSGDClassifier, dict(MLP_NET, **OPT), "vectors"),
    (ANILClassifier, dict(module=Conv4, **OPT), "images"),
    (ReptileClassifier, dict(MLP_NET, inner_lr=0.1, inner_steps=2, zero_head=True), "vectors"),
    (MAMLRegressor, dict(MLP_NET, **OPT), "sine"),
    (MetaSGDRegressor, dict(MLP_NET, **OPT), "sine"),
    (ANILRegressor, dict(MLP_NET, **OPT), "sine"),
    (ReptileRegressor, dict(MLP_NET, inner_lr=0.1, inner_steps=2), "sine"),
    (MANNClassifier, dict(module__controller_size=32, module__memory_rows=16, module__memory_width=8,
                          module__n_way=5), "vectors"),
    (FeatureVoteClassifier, dict(module__hidden_size=16), "vectors"),
    (MetaLSTMClassifier, dict(module=Conv4, inner_lr=0.1, inner_steps=2), "images"),
    (MetaLSTMRegressor, dict(MLP_NET, inner_lr=0.01, inner_steps=2), "sine"),
    (InContextClassifier, dict(pretrained=True), "vectors"),
]


def make_data(kind):
    """Meta-training tasks, and one support/query split of unseen data."""
    if kind == "sine":
        tasks = list(SinusoidTasks(n_tasks=16, k_shot=5, n_query=5, random_state=0))
        task = SinusoidTasks(n_tasks=1, k_shot=5, n_query=20, random_state=1).__iter__().__next__()
        return tasks, (task.X_support, task.y_support, task.X_query)
    n_features = 784 if kind == "images" else 24
    data = make_subspace_classification(n_classes=30, n_samples_per_class=20, n_features=n_features,
                                        random_state=0)
    X = data.data.astype(np.float32)
    if kind == "images":
        X = X.reshape(-1, 1, 28, 28)
    y = data.target
    train = y < 20
    tasks = list(EpisodeSampler(X[train], y[train], n_way=5, k_shot=1, n_query=5, n_tasks=16, random_state=0))
    test = np.flatnonzero(~train)
    test_y = y[test]
    classes = np.unique(test_y)[:5]
    support = np.concatenate([test[test_y == c][:1] for c in classes])
    query = np.concatenate([test[test_y == c][1:6] for c in classes])
    return tasks, (X[support], y[support], X[query])


def label(cls, kwargs, kind):
    extra = []
    if kwargs.get("module") is Conv4:
        extra.append("Conv-4")
    if kwargs.get("fce"):
        extra.append("fce")
    if kwargs.get("first_order"):
        extra.append("first order")
    return cls.__name__ + (f" ({', '.join(extra)})" if extra else "")


def check_estimator(cls, kwargs, kind, device, precision, out_dir, index):
    """meta_fit/fit/predict on the device; pickles for the CPU process."""
    tasks, (X_support, y_support, X_query) = make_data(kind)
    learner = cls(**kwargs, max_epochs=1, batch_size=4, device=device, precision=precision, verbose=0,
                  random_state=0)
    learner.meta_fit(tasks)
    devices = {p.device.type for _, p in learner.get_all_learnable_params()}
    if devices != {torch.device(device).type}:
        raise AssertionError(f"meta-parameters on {devices}, expected {device}")
    meta_fitted = pickle.dumps(learner)
    learner.fit(X_support, y_support)
    prediction = learner.predict(X_query)
    if not np.all(np.isfinite(np.asarray(prediction, dtype=np.float64))):
        raise AssertionError("non-finite predictions")
    if hasattr(learner, "classes_"):
        proba = learner.predict_proba(X_query)
        if not np.allclose(proba.sum(1), 1, atol=1e-4):
            raise AssertionError("probabilities do not sum to 1")
    with open(os.path.join(out_dir, f"{index}.pkl"), "wb") as f:
        pickle.dump({"meta_fitted": meta_fitted, "fitted": pickle.dumps(learner),
                     "prediction": np.asarray(prediction), "X_support": X_support, "y_support": y_support,
                     "X_query": X_query, "regression": not hasattr(learner, "classes_")}, f)


def load_on_cpu(out_dir, indices):
    """In a process that sees no GPU: load every pickled learner and compare."""
    code = (
        "import json, pickle, sys, traceback, warnings; import numpy as np; import torch\n"
        "warnings.simplefilter('ignore')\n"
        "results = {}\n"
        "for index in sys.argv[2:]:\n"
        "    try:\n"
        "        with open(f'{sys.argv[1]}/{index}.pkl', 'rb') as f: case = pickle.load(f)\n"
        "        fitted = pickle.loads(case['fitted'])\n"
        "        prediction = fitted.predict(case['X_query'])\n"
        "        if case['regression']:\n"
        "            ok = np.allclose(prediction, case['prediction'], atol=1e-2)\n"
        "        else:\n"
        "            ok = np.mean(prediction == case['prediction']) >= 0.9\n"
        "        assert ok, f'CPU predictions differ: {prediction} vs {case[\"prediction\"]}'\n"
        "        learner = pickle.loads(case['meta_fitted'])\n"
        "        learner.fit(case['X_support'], case['y_support']).predict(case['X_query'])\n"
        "        devices = {p.device.type for _, p in learner.get_all_learnable_params()}\n"
        "        assert devices == {'cpu'}, devices\n"
        "        results[index] = 'pass'\n"
        "    except Exception as error:\n"
        "        results[index] = 'FAIL: ' + traceback.format_exception_only(error)[-1].strip()[:300]\n"
        "print(json.dumps(results))\n"
    )
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    run = subprocess.run([sys.executable, "-c", code, out_dir, *map(str, indices)], capture_output=True,
                         text=True, env=env, timeout=600)
    if run.returncode != 0:
        return {index: "FAIL: " + run.stderr.strip().splitlines()[-1][:300] for index in indices}
    return {int(key): value for key, value in json.loads(run.stdout.strip().splitlines()[-1]).items()}


def _ddp_worker(rank, world_size, port, device, backend, out_dir):
    import torch.distributed as dist

    from skmeta.distributed import DataParallel, shard_tasks

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    if backend == "nccl":
        device = f"cuda:{rank}"
        torch.cuda.set_device(rank)
    try:
        params = ddp_meta_fit(device, rank, world_size, DataParallel, shard_tasks)
        np.savez(os.path.join(out_dir, f"ddp{rank}.npz"), **params)
    finally:
        dist.destroy_process_group()


def ddp_meta_fit(device, rank, world_size, DataParallel, shard_tasks):
    tasks, _ = make_data("vectors")
    learner = MAMLClassifier(**MLP_NET, **OPT, max_epochs=1, batch_size=4 // world_size, device=device,
                             callbacks=[DataParallel()], verbose=0, random_state=rank)
    learner.meta_fit(shard_tasks(tasks, rank=rank, world_size=world_size))
    return {key: p.detach().cpu().numpy() for key, p in learner.get_all_learnable_params()}


def check_data_parallel(device, backend, out_dir):
    import torch.multiprocessing as mp

    from skmeta.distributed import DataParallel, shard_tasks

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, device, backend, out_dir), nprocs=2, join=True)
    single = ddp_meta_fit(device, 0, 1, DataParallel, shard_tasks)
    for rank in range(2):
        got = np.load(os.path.join(out_dir, f"ddp{rank}.npz"))
        for key, value in single.items():
            np.testing.assert_allclose(got[key], value, rtol=1e-4, atol=1e-5, err_msg=key)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --device cpu for a dry run")
    if args.device == "cpu":
        torch.set_num_threads(1)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"torch {torch.__version__}, device {args.device} ({name})")
    rows, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as out_dir:
        cases = []
        for cls, kwargs, kind in ESTIMATORS:
            for precision in ("float32", "bfloat16"):
                index = len(cases)
                cases.append((label(cls, kwargs, kind), precision))
                t = time.perf_counter()
                try:
                    check_estimator(cls, kwargs, kind, args.device, precision, out_dir, index)
                    rows.append([*cases[-1], "pass", None, f"{time.perf_counter() - t:.1f}"])
                except Exception as error:
                    message = traceback.format_exception_only(error)[-1].strip()[:300]
                    rows.append([*cases[-1], "FAIL: " + message, "-", f"{time.perf_counter() - t:.1f}"])
        passed = [i for i, row in enumerate(rows) if row[2] == "pass"]
        for index, result in load_on_cpu(out_dir, passed).items():
            rows[index][3] = result
        for backend in ("gloo", "nccl"):
            if backend == "nccl" and not (args.device.startswith("cuda") and torch.cuda.device_count() >= 2):
                rows.append([f"DataParallel, 2 processes ({backend})", "float32", "skipped: needs 2 GPUs", "-", "-"])
                continue
            t = time.perf_counter()
            try:
                check_data_parallel(args.device, backend, out_dir)
                result = "pass"
            except Exception as error:
                result = "FAIL: " + traceback.format_exception_only(error)[-1].strip()[:300]
            rows.append([f"DataParallel, 2 processes ({backend})", "float32", result, "-",
                         f"{time.perf_counter() - t:.1f}"])
    header = ["estimator", "precision", f"on {args.device}", "pickled, loaded on CPU", "s"]
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths]] + rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)))
    failed = [row for row in rows if any(str(cell).startswith("FAIL") for cell in row)]
    print(f"{len(rows) - len(failed)} of {len(rows)} rows pass, in {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
