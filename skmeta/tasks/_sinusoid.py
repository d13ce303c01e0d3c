"""The sinusoid regression tasks of the MAML paper.

Finn, C., Abbeel, P. and Levine, S. (2017). Model-agnostic meta-learning for
fast adaptation of deep networks. ICML, section 5.1.
"""

import numbers

import numpy as np
import torch
from sklearn.utils import check_random_state, check_scalar

from ._episodes import Task
from ._stream import TaskStream

__all__ = ["SinusoidTasks", "make_sinusoid"]

AMPLITUDE_RANGE = (0.1, 5.0)
PHASE_RANGE = (0.0, np.pi)
X_RANGE = (-5.0, 5.0)


class SinusoidTasks(TaskStream):
    """Sine-wave regression tasks, as in Finn et al. (2017).

    Each task is a function ``y = amplitude * sin(x - phase)`` with
    amplitude drawn uniformly in [0.1, 5] and phase in [0, pi]; its
    ``k_shot`` support points and ``n_query`` query points have ``x``
    uniform in [-5, 5]. The paper's loss is the mean squared error.

    Tasks are drawn many at a time as tensors, so sampling costs
    microseconds per task. Each pass over the collection yields
    ``n_tasks`` new tasks from one random stream seeded by
    ``random_state``: meta-training sees fresh functions every epoch. For
    a fixed set, e.g. to evaluate on, take ``list(tasks)``.

    Parameters
    ----------
    n_tasks : int, default=1000
        Tasks per pass.

    k_shot : int, default=10
        Support points per task (the paper's K).

    n_query : int, default=10
        Query points per task.

    amplitude_range, phase_range, x_range : tuple of float
        Bounds of the uniform distributions; the defaults are the paper's.

    random_state : int, RandomState instance or None, default=None
        Seeds the task stream.

    Examples
    --------
    >>> from skmeta.datasets import SinusoidTasks
    >>> tasks = SinusoidTasks(n_tasks=3, k_shot=5, n_query=20, random_state=0)
    >>> task = next(iter(tasks))
    >>> tuple(task.X_support.shape), tuple(task.y_support.shape), tuple(task.X_query.shape)
    ((5, 1), (5,), (20, 1))
    >>> len(list(tasks))
    3
    """

    # Tasks drawn per vectorised call: amortises Python overhead.
    _chunk = 256

    def __init__(
        self,
        n_tasks=1000,
        k_shot=10,
        n_query=10,
        *,
        amplitude_range=AMPLITUDE_RANGE,
        phase_range=PHASE_RANGE,
        x_range=X_RANGE,
        random_state=None,
    ):
        check_scalar(n_tasks, "n_tasks", numbers.Integral, min_val=1)
        check_scalar(k_shot, "k_shot", numbers.Integral, min_val=1)
        check_scalar(n_query, "n_query", numbers.Integral, min_val=0)
        for name, bounds in (("amplitude_range", amplitude_range), ("phase_range", phase_range), ("x_range", x_range)):
            if len(bounds) != 2 or not bounds[0] <= bounds[1]:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {bounds!r}")
        self.n_tasks, self.k_shot, self.n_query = int(n_tasks), int(k_shot), int(n_query)
        self.amplitude_range = tuple(amplitude_range)
        self.phase_range = tuple(phase_range)
        self.x_range = tuple(x_range)
        self.random_state = random_state
        self._generator = None

    def _draw(self, generator, n_tasks):
        batch = self._sample(generator, n_tasks)
        for i in range(n_tasks):
            yield Task(batch["X_support"][i], batch["y_support"][i], batch["X_query"][i], batch["y_query"][i])

    def sample(self, n_tasks):
        """Draw ``n_tasks`` tasks as stacked tensors.

        Advances the same stream as iteration.

        Parameters
        ----------
        n_tasks : int

        Returns
        -------
        batch : dict of torch.Tensor
            ``amplitude`` and ``phase`` of shape (n_tasks,), ``X_support``
            (n_tasks, k_shot, 1), ``y_support`` (n_tasks, k_shot),
            ``X_query`` (n_tasks, n_query, 1), ``y_query`` (n_tasks, n_query).
        """
        check_scalar(n_tasks, "n_tasks", numbers.Integral, min_val=1)
        return self._sample(self._stream(), n_tasks)

    def _sample(self, g, n_tasks):
        amplitude = _uniform((n_tasks,), self.amplitude_range, g)
        phase = _uniform((n_tasks,), self.phase_range, g)
        X = _uniform((n_tasks, self.k_shot + self.n_query, 1), self.x_range, g)
        y = amplitude[:, None] * torch.sin(X[..., 0] - phase[:, None])
        return {
            "amplitude": amplitude,
            "phase": phase,
            "X_support": X[:, : self.k_shot],
            "y_support": y[:, : self.k_shot],
            "X_query": X[:, self.k_shot :],
            "y_query": y[:, self.k_shot :],
        }


def _uniform(shape, bounds, generator):
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=generator)


def make_sinusoid(n_samples=100, *, amplitude=None, phase=None, x_range=X_RANGE, random_state=None):
    """Points of one sinusoid task: ``y = amplitude * sin(x - phase)``.

    A single regression data set for ``fit`` / ``predict`` on a
    meta-trained learner, with the task distribution of
    :class:`SinusoidTasks`.

    Parameters
    ----------
    n_samples : int, default=100
        Number of points, ``x`` uniform in ``x_range``.

    amplitude, phase : float or None, default=None
        The function; None draws them as the MAML paper does (amplitude
        uniform in [0.1, 5], phase in [0, pi]).

    x_range : tuple of float, default=(-5.0, 5.0)

    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n_samples, 1), float32
    y : ndarray of shape (n_samples,), float32

    Examples
    --------
    >>> from skmeta.datasets import make_sinusoid
    >>> X, y = make_sinusoid(5, amplitude=2.0, phase=0.0, random_state=0)
    >>> X.shape, y.shape
    ((5, 1), (5,))
    >>> bool(abs(y - 2 * np.sin(X[:, 0])).max() < 1e-6)
    True
    """
    check_scalar(n_samples, "n_samples", numbers.Integral, min_val=1)
    rng = check_random_state(random_state)
    if amplitude is None:
        amplitude = rng.uniform(*AMPLITUDE_RANGE)
    if phase is None:
        phase = rng.uniform(*PHASE_RANGE)
    X = rng.uniform(x_range[0], x_range[1], size=(n_samples, 1)).astype(np.float32)
    y = (amplitude * np.sin(X[:, 0] - phase)).astype(np.float32)
    return X, y
