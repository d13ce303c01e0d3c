"""Data-parallel meta-training with ``torch.distributed``.

Several processes (on one machine or many, on CPUs or GPUs) meta-train one
learner together: each draws the tasks of its shard of every meta-batch
(:func:`shard_tasks`), computes the meta-gradient of its share, and the
:class:`DataParallel` callback averages those gradients across processes
before every optimiser step, after broadcasting the initial meta-parameters
of process 0. Every process then holds the same meta-parameters after every
update, those that one process would reach with the whole meta-batch.

The processes are started by ``torchrun`` (or ``torch.multiprocessing``);
:func:`init_process_group` joins them with the gloo backend on CPU and
nccl on GPU. Nothing here is a scheduler or a communication layer: the
collectives are ``torch.distributed``'s and the training loop is skorch's,
reached through its callback hooks (``on_train_begin``, ``on_grad_computed``,
``on_batch_end``), so every family works unchanged, MAML's second-order
meta-gradient, Meta-SGD's learned step sizes and Reptile's update (which
skmeta expresses as a gradient) included.
"""

import os
from collections import defaultdict

import torch
import torch.distributed as dist
from skorch.callbacks import Callback, Checkpoint, PrintLog, ProgressBar, TrainEndCheckpoint

__all__ = ["DataParallel", "init_process_group", "is_main_process", "shard_tasks"]


def _rank_and_world_size(rank, world_size):
    if rank is None or world_size is None:
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
        else:
            rank = int(os.environ.get("RANK", 0)) if rank is None else rank
            world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if not (isinstance(world_size, int) and world_size >= 1):
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    if not (isinstance(rank, int) and 0 <= rank < world_size):
        raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
    return rank, world_size


def is_main_process():
    """Whether this process is the one that prints and writes files (rank 0).

    True outside a ``torch.distributed`` run.

    Returns
    -------
    bool

    Examples
    --------
    >>> from skmeta.distributed import is_main_process
    >>> is_main_process()
    True
    """
    return _rank_and_world_size(None, None)[0] == 0


def init_process_group(backend=None, device="cpu"):
    """Join the processes of a ``torchrun`` (or ``torch.multiprocessing``) run.

    Reads what the launcher sets in the environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``) and
    calls :func:`torch.distributed.init_process_group`. A run of a single
    process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) is left alone.

    Parameters
    ----------
    backend : {"gloo", "nccl"} or None, default=None
        None picks nccl for CUDA devices, gloo otherwise.

    device : str, default="cpu"
        The learner's device. For "cuda", each process is given the GPU
        ``LOCAL_RANK`` of its machine, and the returned device names it.

    Returns
    -------
    device : str
        The device this process should pass to its learner:
        ``"cuda:LOCAL_RANK"`` for CUDA, ``device`` unchanged otherwise.

    Examples
    --------
    >>> from skmeta.distributed import init_process_group
    >>> init_process_group()   # one process: nothing to join
    'cpu'
    """
    device = str(device)
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    is_cuda = torch.device(device).type == "cuda"
    if is_cuda and world_size > 1:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if world_size > 1 and not dist.is_initialized():
        if backend is None:
            backend = "nccl" if is_cuda else "gloo"
        dist.init_process_group(backend=backend)
    return device


class _TaskShard:
    """Every ``world_size``-th task of each pass, from ``rank`` on."""

    def __init__(self, tasks, rank, world_size):
        self.tasks = tasks
        self.rank = rank
        self.world_size = world_size

    def __len__(self):
        # Ranks must run the same number of meta-batches (each update is a
        # collective), so the last len(tasks) % world_size tasks are dropped,
        # as torch's DistributedSampler does with drop_last=True.
        return len(self.tasks) // self.world_size

    def __iter__(self):
        try:
            n_kept = len(self.tasks) - len(self.tasks) % self.world_size
        except TypeError:  # an endless stream: nothing to drop
            n_kept = None
        for i, task in enumerate(self.tasks):
            if n_kept is not None and i >= n_kept:
                return
            if i % self.world_size == self.rank:
                yield task

    def first_task(self):
        """The shard's next task, without advancing a collection's stream
        (meta_fit peeks it to build the network)."""
        if hasattr(self.tasks, "first_task"):  # any rank's network is built alike
            return self.tasks.first_task()
        return next(iter(self))

    def get_state(self):
        """The position of the sharded collection's stream, for resuming."""
        return self.tasks.get_state() if hasattr(self.tasks, "get_state") else None

    def set_state(self, state):
        """Move the sharded collection's stream to a saved position."""
        if hasattr(self.tasks, "set_state"):
            self.tasks.set_state(state)
        return self

    def __repr__(self):
        return f"shard_tasks({self.tasks!r}, rank={self.rank}, world_size={self.world_size})"


def shard_tasks(tasks, rank=None, world_size=None):
    """The tasks one process of a data-parallel run meta-trains on.

    Process ``rank`` takes tasks ``rank, rank + world_size, ...`` of every
    pass over `tasks`, so the processes see different tasks and, together,
    each task of the pass once: ``world_size`` processes with meta-batches
    of ``B / world_size`` tasks see, update by update, the meta-batches of
    ``B`` tasks that one process sees. Every process iterates `tasks` (draws
    every task and keeps its share), so a sampler must give the same
    stream in every process: give it an int ``random_state``.

    Parameters
    ----------
    tasks : iterable of :class:`~skmeta.tasks.Task`
        A task collection; when it has a length, the last
        ``len(tasks) % world_size`` tasks of each pass are dropped so that
        all processes run the same number of meta-batches.

    rank, world_size : int or None, default=None
        This process and the number of processes; None reads them from
        the initialised process group, or from the ``RANK`` and
        ``WORLD_SIZE`` environment variables a launcher sets (0 and 1
        without either).

    Returns
    -------
    shard : iterable of Task
        Re-iterable when `tasks` is; has a length when `tasks` has one.

    See Also
    --------
    DataParallel : Averages the meta-gradients of the shards.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skmeta import EpisodeSampler
    >>> from skmeta.distributed import shard_tasks
    >>> X, y = load_digits(return_X_y=True)
    >>> tasks = EpisodeSampler(X, y, n_way=5, k_shot=1, n_query=5, n_tasks=11, random_state=0)
    >>> [len(shard_tasks(tasks, rank=r, world_size=2)) for r in (0, 1)]
    [5, 5]
    """
    rank, world_size = _rank_and_world_size(rank, world_size)
    return _TaskShard(tasks, rank, world_size)


class DataParallel(Callback):
    """Average meta-gradients across the processes of a ``torch.distributed`` run.

    Add it to the callbacks of any skmeta learner and give each process its
    shard of the tasks (:func:`shard_tasks`), with ``batch_size`` the
    per-process share of the meta-batch. Before meta-training, the
    meta-parameters (and buffers) of process 0 are broadcast, so that all
    processes start alike whatever their seeds; after every backward pass,
    the gradients of all learnable parameters
    (``net.get_all_learnable_params()``, which includes e.g. Meta-SGD's
    step sizes) are averaged with one all-reduce, so the optimiser steps of
    all processes are identical. The recorded training (and validation)
    loss and accuracy of each meta-batch are averaged too, so the history
    of process 0 is that of the whole run.

    On processes other than 0, the callbacks that print or write files
    (skorch's ``PrintLog``, ``ProgressBar``, ``Checkpoint``,
    ``TrainEndCheckpoint``) are switched off for the call: only process 0
    reports progress and saves checkpoints.

    Outside a process group (one process) it does nothing. All processes
    must run the same number of meta-batches: use a task collection with a
    length, or the same ``max_epochs`` and no per-process stopping rule
    (a wall-clock budget would stop processes at different updates).

    See Also
    --------
    shard_tasks : The tasks of one process.
    init_process_group : Joins the processes started by ``torchrun``.

    Notes
    -----
    Averaging gradients of equal shards equals the gradient of the mean
    loss over the whole meta-batch, because every skmeta ``meta_loss`` is a
    mean over the tasks of a meta-batch; the results agree with one process
    to float rounding (the sum is reduced in another order).

    References
    ----------
    .. [1] S. Li et al., "PyTorch Distributed: Experiences on Accelerating
       Data Parallel Training", VLDB 2020.

    Examples
    --------
    In a single process (no process group) it leaves meta-training as is:

    >>> from sklearn.datasets import load_digits
    >>> from skmeta import EpisodeSampler, ProtoNetClassifier
    >>> from skmeta.distributed import DataParallel, shard_tasks
    >>> X, y = load_digits(return_X_y=True)
    >>> tasks = EpisodeSampler(X / 16, y, n_way=5, k_shot=1, n_query=5, n_tasks=20, random_state=0)
    >>> learner = ProtoNetClassifier(callbacks=[DataParallel()], max_epochs=1, batch_size=4,
    ...                              verbose=0, random_state=0)
    >>> learner.meta_fit(shard_tasks(tasks)).history[-1, "train_batch_count"]
    5

    Under ``torchrun --nproc_per_node=2 script.py``, the script is the same
    with ``init_process_group()`` first and ``batch_size`` halved.
    """

    muted_on_other_ranks = (PrintLog, ProgressBar, Checkpoint, TrainEndCheckpoint)

    def _active(self):
        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def on_train_begin(self, net, **kwargs):
        if not self._active():
            return
        tensors = []
        for name in net._modules:
            module = getattr(net, name + "_")
            tensors.extend(module.state_dict(keep_vars=True).values())
        tensors = [t.data if isinstance(t, torch.nn.Parameter) else t for t in tensors]
        for group in _by_dtype(tensors).values():
            flat = _flatten(group)
            dist.broadcast(flat, src=0)
            _unflatten_into(flat, group)
        if dist.get_rank() != 0:
            self._callbacks = net.callbacks_
            net.callbacks_ = [
                (name, cb) for name, cb in net.callbacks_ if not isinstance(cb, self.muted_on_other_ranks)
            ]

    def on_train_end(self, net, **kwargs):
        callbacks = getattr(self, "_callbacks", None)
        if callbacks is not None:
            net.callbacks_ = callbacks
            del self._callbacks

    def on_grad_computed(self, net, named_parameters, training=True, **kwargs):
        if not self._active():
            return
        params = [p for _, p in named_parameters if p.requires_grad]
        world_size = dist.get_world_size()
        for group in _by_dtype(params).values():
            # A parameter may have no gradient on some process (a branch not
            # taken); one flag per parameter travels with the gradients so that
            # all processes agree on which parameters the optimiser steps.
            has_grad = torch.tensor(
                [p.grad is not None for p in group], dtype=group[0].dtype, device=group[0].device
            )
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in group]
            flat = torch.cat([has_grad, _flatten(grads)])
            dist.all_reduce(flat)
            has_grad, flat = flat[: len(group)] > 0, flat[len(group):] / world_size
            offset = 0
            for p, any_grad in zip(group, has_grad.tolist()):
                n = p.numel()
                if any_grad:
                    mean = flat[offset: offset + n].view(p.shape)
                    if p.grad is None:
                        p.grad = torch.empty_like(p)
                    p.grad.copy_(mean)
                offset += n

    def on_batch_end(self, net, training=None, **kwargs):
        if not self._active():
            return
        batch = net.history[-1, "batches", -1]
        prefix = "train" if training else "valid"
        keys = [key for key in (prefix + "_loss", prefix + "_acc") if key in batch]
        values = torch.tensor([float(batch[key]) for key in keys], dtype=torch.float64)
        if net.device is not None and torch.device(net.device).type == "cuda":
            values = values.to(net.device)  # nccl reduces device tensors only
        dist.all_reduce(values)
        for key, value in zip(keys, (values / dist.get_world_size()).tolist()):
            net.history.record_batch(key, value)


def _by_dtype(tensors):
    groups = defaultdict(list)
    for t in tensors:
        groups[(t.dtype, t.device)].append(t)
    return groups


def _flatten(tensors):
    # reshape copies non-contiguous (e.g. channels-last) tensors; the
    # collectives need one contiguous buffer.
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _unflatten_into(flat, tensors):
    offset = 0
    for t in tensors:
        n = t.numel()
        with torch.no_grad():
            t.copy_(flat[offset: offset + n].view(t.shape))
        offset += n
