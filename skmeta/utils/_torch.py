"""Small torch helpers shared by the estimators: tensors from user arrays,
a private random stream per call, and the modules a learner owns."""

import contextlib
import contextvars
import threading

import numpy as np
import torch
from sklearn.utils import check_random_state

__all__ = ["as_tensor", "SeededRNG", "owned_modules", "set_training"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.float32, "float64": torch.float64}


def torch_dtype(precision):
    """The dtype of weights and inputs for a ``precision`` setting (bfloat16
    is autocast arithmetic over float32 weights)."""
    return _DTYPES[precision]


def as_tensor(X, device, dtype=torch.float32):
    """``X`` as a tensor of ``dtype`` on ``device``.

    A read-only array (a DataFrame's values, a memory map) is copied first:
    torch warns on, and may write through, a tensor over read-only memory.
    """
    if torch.is_tensor(X):
        return X.to(device=device, dtype=dtype)
    X = np.asarray(X, dtype=torch.empty((), dtype=dtype).numpy().dtype)
    if not X.flags.writeable:
        X = X.copy()
    return torch.as_tensor(X, device=device)


# torch has one global CPU generator per process; forking it is a
# read-modify-write of that global state, so concurrent forks in threads
# would leak one call's stream into another's and leave the global stream
# changed. Seeded sections therefore run one at a time.
_GLOBAL_STREAM = threading.RLock()


class SeededRNG:
    """A private torch random stream for one call.

    Forks torch's global CPU generator, seeds it (from ``random_state``, or
    restores a saved ``state`` to continue an earlier stream), and restores
    the global generator on exit, so a learner's randomness depends on its
    own ``random_state`` and never leaks into, or reads from, the global
    stream. ``state_`` holds the private stream's state at exit.
    """

    def __init__(self, random_state, state=None):
        self.random_state = random_state
        self.state = state

    def __enter__(self):
        _GLOBAL_STREAM.acquire()
        try:
            self._fork = torch.random.fork_rng(devices=[])
            self._fork.__enter__()
            if self.state is not None:
                torch.random.set_rng_state(self.state)
            else:
                seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
                torch.random.default_generator.manual_seed(seed)
        except BaseException:
            _GLOBAL_STREAM.release()
            raise
        return self

    def get_state(self):
        """The private stream's state now (inside the ``with`` block)."""
        return torch.random.get_rng_state()

    def __exit__(self, *exc):
        try:
            self.state_ = torch.random.get_rng_state()
            return self._fork.__exit__(*exc)
        finally:
            _GLOBAL_STREAM.release()


def owned_modules(net):
    """The torch modules a skorch net owns (``module_``, ``criterion_`` and
    any other ``*_`` module its methods registered), by attribute name."""
    return {
        name: value
        for name, value in vars(net).items()
        if name.endswith("_") and not name.startswith("_") and isinstance(value, torch.nn.Module)
    }


def set_training(net, training):
    """Put every module of ``net`` in train or eval mode."""
    for module in owned_modules(net).values():
        module.train(training)


def has_non_finite(values, allow_nan=False):
    """Whether ``values`` hold an infinity (or, unless ``allow_nan``, a NaN).

    Every task of every meta-batch and every support and query set is
    checked, so the check is on a hot path: on the CPU numpy's takes a few
    microseconds against torch's tens for the small tensors of a task
    (torch's for bfloat16, which numpy lacks, and on other devices)."""
    if values.device.type == "cpu" and values.dtype != torch.bfloat16:
        array = values.detach().numpy()
        return bool(np.isinf(array).any()) if allow_nan else not bool(np.isfinite(array).all())
    return bool((torch.isinf(values) if allow_nan else ~torch.isfinite(values)).any())


def all_finite(tensors):
    """Whether every floating-point tensor of ``tensors`` (None skipped) is
    finite, as a 0-d bool tensor on their device: unlike ``has_non_finite``
    it reads nothing back, so a GPU's queue does not stall. The largest magnitude
    of each is NaN or inf exactly when it has a NaN or inf, and cannot
    overflow as a sum would."""
    tensors = [t.detach() for t in tensors if t is not None and t.is_floating_point()]
    if not tensors:
        return torch.tensor(True)
    by_device = {}
    for t in tensors:
        by_device.setdefault((t.device, t.dtype), []).append(t)
    flags = [torch.stack(torch._foreach_norm(group, float("inf"))).isfinite().all()
             for group in by_device.values()]
    return torch.stack([f.to(flags[0].device) for f in flags]).all()


def full_precision(tensor):
    """``tensor`` out of autocast's reduced precision: bfloat16 and float16
    become float32, float32 and float64 stay as they are."""
    return tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor


# How many leading rows of a batch are the reference set (a task's support
# set) whose statistics normalise every row in the task batch-norm layers;
# None means the whole batch. A context variable, so threads adapting
# different learners never see each other's value.
_REFERENCE_ROWS = contextvars.ContextVar("reference_rows", default=None)


def statistics_rows():
    """Leading rows whose batch statistics normalise the batch (None: all)."""
    return _REFERENCE_ROWS.get()


@contextlib.contextmanager
def reference_rows(n_rows):
    """Within the block, task batch norm takes its statistics from the first ``n_rows`` rows."""
    token = _REFERENCE_ROWS.set(n_rows)
    try:
        yield
    finally:
        _REFERENCE_ROWS.reset(token)
