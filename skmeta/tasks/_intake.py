"""Task intake: what a learner checks and converts before a task reaches
its weights, and the task collection seen through torch's data API.

Every task of ``meta_fit`` passes through :func:`check_task` when it is
drawn: a bad task (non-finite values, mismatched widths, unusable labels)
raises a ``ValueError`` or ``TypeError`` naming the task and the problem
before any weight is touched.
"""

import itertools
import numbers
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from ..utils._torch import has_non_finite
from ._episodes import Task

__all__ = ["EncodedTask", "TaskDataset", "TaskLoader", "check_task", "check_labels", "peek_tasks"]


class EncodedTask(NamedTuple):
    """A task as a learner's hooks see it: tensors on the learner's device,
    targets encoded (class codes ``0 .. n_way - 1`` for classification)."""

    X_support: torch.Tensor
    y_support: torch.Tensor
    X_query: torch.Tensor
    y_query: torch.Tensor
    n_way: int


def _features(X, name, allow_nan=False):
    """``X`` as a finite float32 array or tensor of at least 2 dimensions
    (NaN, a missing value, allowed where ``allow_nan``)."""
    if torch.is_tensor(X):
        if X.is_complex():
            raise TypeError(f"{name} is complex; meta-learners take real-valued features")
        values = X.detach()
        if values.dtype != torch.float32:
            values = values.to(torch.float32)
    else:
        array = np.asarray(X)
        if np.iscomplexobj(array):
            raise TypeError(f"{name} is complex; meta-learners take real-valued features")
        if array.dtype.kind not in "biuf":
            try:
                array = array.astype(np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"{name} has non-numeric values (dtype {array.dtype})") from None
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf, rejected below
            values = torch.from_numpy(np.array(array, dtype=np.float32))
    if values.dim() < 2:
        raise ValueError(
            f"{name} must have one row per example and at least one feature, shape (n_examples, ...); "
            f"got shape {tuple(values.shape)}"
        )
    if has_non_finite(values, allow_nan):
        raise ValueError(
            f"{name} contains {'infinite' if allow_nan else 'NaN or infinite'} values "
            "(or values beyond float32's range, about 3.4e38)"
        )
    return values


def check_labels(y, name, n_examples, numeric):
    """``y`` as a 1-D (or, for regression, 2-D) array of ``n_examples`` labels."""
    if isinstance(y, (list, tuple)):  # numpy would silently turn [0, "a"] into strings
        _check_one_label_type(y, name)
    y = y.detach().cpu().numpy() if torch.is_tensor(y) else np.asarray(y)  # (.cpu() is free on the CPU)
    if y.ndim == 0 or (not numeric and y.ndim != 1) or y.ndim > 2:
        raise ValueError(f"{name} must be {'1-D or 2-D' if numeric else '1-D'}, got shape {y.shape}")
    if len(y) != n_examples:
        raise ValueError(f"{name} has {len(y)} labels for {n_examples} examples")
    if numeric:
        if np.iscomplexobj(y) or y.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be real numbers for a regressor, got dtype {y.dtype}")
        if not np.all(np.isfinite(y.astype(np.float64))):
            raise ValueError(f"{name} contains NaN or infinite targets")
        return y
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains NaN or infinite labels")
    if y.dtype.kind == "O":
        _check_one_label_type(y.tolist(), name)
    return y


def _check_one_label_type(labels, name):
    kinds = {type(label) for label in labels}
    families = {str if issubclass(k, str) else numbers.Number if issubclass(k, numbers.Number) else k for k in kinds}
    if len(families) > 1:
        raise TypeError(f"{name} mixes label types ({', '.join(sorted(k.__name__ for k in kinds))}); use one type")


def check_task(task, numeric, allow_nan=False):
    """Validate one meta-training task; returns ``(X_support, X_query)`` as
    float32 tensors on the CPU.

    Parameters
    ----------
    task : Task
    numeric : bool
        Regression targets (True) or class labels (False).

    allow_nan : bool, default=False
        Accept NaN features as missing values (learners that handle them).

    Raises
    ------
    TypeError
        Not a Task, complex or non-numeric features, labels of mixed types.
    ValueError
        Missing query labels, empty sets, fewer than 2 dimensions,
        non-finite values, support and query of different widths, as many
        labels as examples.
    """
    if not isinstance(task, Task):
        raise TypeError(f"task collections must yield skmeta.tasks.Task, got {type(task).__name__}")
    if task.y_query is None:
        raise ValueError("meta-training tasks need query labels (Task.y_query is None)")
    X_support = _features(task.X_support, "X_support", allow_nan)
    X_query = _features(task.X_query, "X_query", allow_nan)
    if X_support.shape[1:] != X_query.shape[1:]:
        raise ValueError(
            f"support and query features differ: {tuple(X_support.shape[1:])} vs {tuple(X_query.shape[1:])}"
        )
    # (shape[0], not len(): a tensor's __len__ is a Python wrapper, paid per task)
    for name, X in (("support", X_support), ("query", X_query)):
        if X.shape[0] == 0:
            raise ValueError(f"the {name} set is empty")
    check_labels(task.y_support, "y_support", X_support.shape[0], numeric)
    check_labels(task.y_query, "y_query", X_query.shape[0], numeric)
    return X_support, X_query


class TaskDataset(IterableDataset):
    """A task collection seen through torch's data API, so that skorch's
    ``get_iterator`` (a :class:`TaskLoader`) cuts it into meta-batches.

    Each task is encoded by ``encode`` when drawn; an error names the task's
    position in the pass.
    """

    def __init__(self, tasks, encode):
        self.tasks = tasks
        self.encode = encode

    def __iter__(self):
        for index, task in enumerate(self.tasks):
            try:
                yield self.encode(task)
            except (TypeError, ValueError) as error:
                raise type(error)(f"task {index} of the collection: {error}") from error

    def __len__(self):
        return len(self.tasks)


def _as_list(batch):
    return list(batch)


class TaskLoader(DataLoader):
    """skorch's iterator for task collections: a :class:`torch.utils.data.DataLoader`
    whose meta-batches are lists of encoded tasks (tasks of one batch may
    differ in shape, so they are not stacked). Other datasets (the
    examples of ``forward``) get torch's default collation."""

    def __init__(self, dataset, *args, collate_fn=None, **kwargs):
        if collate_fn is None and isinstance(dataset, TaskDataset):
            collate_fn = _as_list
        super().__init__(dataset, *args, collate_fn=collate_fn, **kwargs)


def peek_tasks(tasks):
    """``(tasks, first)``: the first task of a collection without consuming it.

    A collection that draws from a random stream (``first_task``) shows its
    next task without advancing the stream, so a resumed run sees the same
    episodes as an uninterrupted one; a one-shot iterator is chained back
    together.
    """
    if isinstance(tasks, (str, bytes)) or not hasattr(tasks, "__iter__"):
        raise TypeError(f"meta_fit takes an iterable of skmeta.tasks.Task, got {type(tasks).__name__}")
    if isinstance(tasks, (np.ndarray, torch.Tensor)) or hasattr(tasks, "iloc"):
        raise TypeError(
            "meta_fit takes an iterable of skmeta.tasks.Task (e.g. an EpisodeSampler), not an array; "
            "fit(X, y) adapts to one support set"
        )
    if hasattr(tasks, "__len__") and len(tasks) == 0:
        raise ValueError("the task collection is empty")
    if hasattr(tasks, "first_task"):
        return tasks, tasks.first_task()
    iterator = iter(tasks)
    try:
        first = next(iterator)
    except StopIteration:
        raise ValueError("the task collection is empty") from None
    if iterator is tasks:  # a one-shot iterator: keep what was peeked
        tasks = itertools.chain([first], iterator)
    if not isinstance(first, Task):
        raise TypeError(f"task collections must yield skmeta.tasks.Task, got {type(first).__name__}")
    return tasks, first
