"""Scaling out: data-parallel meta-training and episodic evaluation on Dask.

    python benchmarks/bench_scaling.py train [--learner protonet|maml] [--n-tasks 64]
    python benchmarks/bench_scaling.py eval [--n-episodes 2000]

train: meta-training throughput (tasks/s) on Omniglot (5-way 1-shot
15-query, Conv-4, float32, one torch thread per process), one process with
meta-batch 4 against two gloo processes with meta-batch 2 each (the same
tasks, the same updates), and the speed-up. Timed inside the processes,
from a barrier after a warm-up epoch to the end of meta-training.

eval: a Conv-4 ProtoNet evaluated on 5-way 1-shot 15-query episodes of the
held-out alphabets, serially in this process against a local Dask cluster
of 2 worker processes with 1 thread each, through
skmeta.model_selection.evaluate_episodes; the speed-up, the per-episode
time inside the workers, and the engine's overhead per episode (wall time
x workers / episodes minus the in-worker time per episode).

Prints one markdown table row per measurement. Reads Lake's Omniglot zips
from ../shared/data/omniglot (or --omniglot PATH).
"""

import argparse
import os
import platform
import socket
import sys
import time
from pathlib import Path

import numpy as np
import torch

from skmeta import EpisodeSampler, MAMLClassifier, ProtoNetClassifier
from skmeta.cli import OMNIGLOT_TEST_ALPHABETS
from skmeta.datasets import load_omniglot
from skmeta.model_selection import EpisodicSplit, evaluate_episodes
from skmeta.modules import Conv4
from skmeta.tasks import rotate_classes

OMNIGLOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"
META_BATCH = 4


def load_split(path):
    data = load_omniglot(path)
    test = np.isin(data.alphabet, OMNIGLOT_TEST_ALPHABETS)
    return (data.data[~test], data.target[~test]), (data.data[test], data.target[test])


def make_learner(name, world_size, rank):
    from skmeta.distributed import DataParallel

    kwargs = dict(max_epochs=1, batch_size=META_BATCH // world_size, callbacks=[DataParallel()], verbose=0,
                  random_state=rank)
    if name == "protonet":
        return ProtoNetClassifier(Conv4, **kwargs)
    return MAMLClassifier(Conv4, inner_lr=0.4, inner_steps=1, **kwargs)  # second order


def _train(rank, world_size, port, args, queue):
    import torch.distributed as dist

    from skmeta.distributed import shard_tasks

    torch.set_num_threads(1)
    if world_size > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
    train, _ = load_split(args.omniglot)
    learner = make_learner(args.learner, world_size, rank)
    warm_up = EpisodeSampler(*train, n_way=5, k_shot=1, n_query=15, n_tasks=2 * META_BATCH, random_state=1)
    learner.meta_fit(shard_tasks(warm_up, rank=rank, world_size=world_size))
    tasks = EpisodeSampler(*train, n_way=5, k_shot=1, n_query=15, n_tasks=args.n_tasks, augment=rotate_classes(),
                           random_state=0)
    if world_size > 1:
        dist.barrier()
    start = time.perf_counter()
    learner.partial_meta_fit(shard_tasks(tasks, rank=rank, world_size=world_size), epochs=1)
    seconds = time.perf_counter() - start
    if world_size > 1:
        dist.destroy_process_group()
    queue.put(seconds)


def bench_train(args):
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    results = {}
    for world_size in (1, 2):
        queue = context.Queue()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        processes = [context.Process(target=_train, args=(rank, world_size, port, args, queue))
                     for rank in range(world_size)]
        for p in processes:
            p.start()
        seconds = max(queue.get() for _ in processes)
        for p in processes:
            p.join()
        results[world_size] = args.n_tasks / seconds
    print("| learner | tasks | 1 process (tasks/s) | 2 processes (tasks/s) | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| {args.learner} | {args.n_tasks} | {results[1]:.1f} | {results[2]:.1f} | x{results[2] / results[1]:.2f} |")


def bench_eval(args):
    import distributed

    torch.set_num_threads(1)
    train, test = load_split(args.omniglot)
    tasks = EpisodeSampler(*train, n_way=5, k_shot=1, n_query=15, n_tasks=50, augment=rotate_classes(),
                           random_state=0)
    learner = ProtoNetClassifier(Conv4, max_epochs=1, verbose=0, random_state=0).meta_fit(tasks)
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=15, n_episodes=args.n_episodes, random_state=0)
    start, cpu_start = time.perf_counter(), time.process_time()
    serial = evaluate_episodes(learner, *test, cv)
    serial_seconds, serial_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        # CPU seconds of the worker processes, all threads: what the episodes
        # and the engine cost, whatever share of the cores the machine gives.
        before = client.run(time.process_time)
        start = time.perf_counter()
        on_dask = evaluate_episodes(learner, *test, cv, n_jobs=-1, backend="dask")
        dask_seconds = time.perf_counter() - start
        after = client.run(time.process_time)
    worker_cpu = [after[w] - before[w] for w in after]
    assert np.array_equal(serial.scores, on_dask.scores), "Dask scores differ from the serial ones"
    n = args.n_episodes
    in_worker = (on_dask.fit_time + on_dask.score_time).sum() / n
    in_serial = (serial.fit_time + serial.score_time).sum() / n
    print("| episodes | serial (s) | 2 Dask workers (s) | speed-up | ms/episode fit+score, serial | "
          "ms/episode fit+score, in workers | engine overhead (ms/episode) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {n} | {serial_seconds:.1f} | {dask_seconds:.1f} | x{serial_seconds / dask_seconds:.2f} | "
          f"{1000 * in_serial:.2f} | {1000 * in_worker:.2f} | {1000 * (2 * dask_seconds / n - in_worker):.2f} |")
    print(f"CPU seconds: serial process {serial_cpu:.1f}; workers {', '.join(f'{c:.1f}' for c in worker_cpu)} "
          f"(sum {sum(worker_cpu):.1f}); CPU-bound speed-up with a core per worker "
          f"x{serial_cpu / max(worker_cpu):.2f}")
    print(f"accuracy {serial} (identical on Dask)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("train", "eval"))
    parser.add_argument("--learner", choices=("protonet", "maml"), default="protonet")
    parser.add_argument("--n-tasks", type=int, default=64)
    parser.add_argument("--n-episodes", type=int, default=2000)
    parser.add_argument("--omniglot", default=str(OMNIGLOT))
    args = parser.parse_args(argv)
    print(f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}, "
          f"1 thread per process. Date: {time.strftime('%Y-%m-%d')}.")
    bench_train(args) if args.what == "train" else bench_eval(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
