"""A synthetic prior of tabular classification tasks: random structural
causal models (random MLPs with noise), as TabPFN meta-trains on.

Hollmann, N., Mueller, S., Eggensperger, K. and Hutter, F. (2023). TabPFN: a
transformer that solves small tabular classification problems in a second.
ICLR.
"""

import numbers

import numpy as np
import torch

from ._collections import _bounds
from ._episodes import Task
from ._stream import TaskStream

__all__ = ["PriorTasks", "make_prior_tasks"]

_ACTIVATIONS = (
    np.tanh,
    lambda z: np.maximum(z, 0.0),
    np.sin,
    np.abs,
    lambda z: z,
    lambda z: z * z - 1.0,
    # A step: axis-aligned, tree-like structure (rules on thresholds).
    lambda z: (z > 0).astype(z.dtype),
)


def _standardise(Z):
    return (Z - Z.mean(0)) / (Z.std(0) + 1e-6)


class PriorTasks(TaskStream):
    """Endless classification tasks drawn from a random-MLP / causal-model prior.

    Every task is a new dataset. Its rows come from a random structural
    causal model: a few random causes go through 1 to 4 random layers
    (sparse weights, a random activation per layer, Gaussian noise at
    every node); features and targets are nodes of that graph, so a
    feature can be a cause of the label, an effect of it, or unrelated.
    The label is a random function of the graph, turned into classes in
    one of three ways: thresholds at random quantiles of one node, the
    argmax over ``n_way`` nodes, or (with probability ``local_rate``) the
    nearest of several prototype rows in a few features' nodes, each prototype
    carrying a class, so that a class can be several separate regions
    (where neighbours beat any smooth rule); then label noise.
    Features are then made to look like real tables: some are discretised
    into 2 to 8 levels coded in random order (categorical-like), some are
    skewed (``exp``), some are constant, every one gets a random scale
    and offset, and in some tasks random cells are missing (NaN).

    A task is an episode: ``n_way`` classes (those with too few rows are
    dropped, never fewer than 2), ``k_shot`` support and ``n_query`` query
    rows per class. Widths, ways, shots and query sizes vary from task to
    task within the given ranges, so one learner meta-trains for all of
    them. Each pass yields ``n_tasks`` new tasks from one random stream
    (endless when ``n_tasks`` is None); every row of a task is drawn at
    once with array operations.

    Parameters
    ----------
    n_tasks : int or None, default=None
        Tasks per pass; None is endless.

    n_way : int or (int, int), default=(2, 10)
        Classes per task, or an inclusive range drawn from uniformly.

    k_shot : int or (int, int), default=(1, 10)
        Support rows per class, or an inclusive range.

    n_query : int or (int, int), default=(5, 15)
        Query rows per class, or an inclusive range.

    max_features : int, default=100
        Features per task are drawn log-uniformly from 1 to ``max_features``
        (narrow tables are as common as wide ones per octave).

    categorical_rate : float, default=0.25
        Probability that a feature is discretised into 2 to 8 levels.

    constant_rate : float, default=0.03
        Probability that a feature is constant.

    missing_rate : float, default=0.2
        Probability that a task has missing values; in such a task each
        cell of a random half of the features is missing with a
        probability drawn uniformly in [0, 0.3].

    local_rate : float, default=0.3
        Probability that a task's classes are nearest-prototype regions:
        ``n_way`` to ``4 * n_way`` prototype rows, each of a class (every
        class has one), in 1 to 8 of the nodes that the features observe.

    random_state : int, RandomState instance or None, default=None
        Seeds the task stream.

    See Also
    --------
    make_prior_tasks : The same, as a function.
    skmeta.tabular.InContextClassifier : Meta-trained on this prior.

    References
    ----------
    Hollmann, N., Mueller, S., Eggensperger, K. and Hutter, F. (2023).
    TabPFN: a transformer that solves small tabular classification
    problems in a second. ICLR.

    Examples
    --------
    >>> from skmeta.datasets import PriorTasks
    >>> tasks = PriorTasks(n_tasks=2, n_way=3, k_shot=2, n_query=4, max_features=5, random_state=0)
    >>> [(tuple(t.X_support.shape), t.y_support.tolist()) for t in tasks]
    [((6, 2), [0, 0, 1, 1, 2, 2]), ((6, 3), [0, 0, 1, 1, 2, 2])]
    """

    def __init__(self, n_tasks=None, n_way=(2, 10), k_shot=(1, 10), n_query=(5, 15), max_features=100,
                 categorical_rate=0.25, constant_rate=0.03, missing_rate=0.2, local_rate=0.3, random_state=None):
        self._n_way = _bounds("n_way", n_way, 2)
        self._k_shot = _bounds("k_shot", k_shot, 1)
        self._n_query = _bounds("n_query", n_query, 1)
        if not isinstance(max_features, numbers.Integral) or isinstance(max_features, bool) or max_features < 1:
            raise ValueError(f"max_features must be an integer >= 1, got {max_features!r}")
        for name, value in (("categorical_rate", categorical_rate), ("constant_rate", constant_rate),
                            ("missing_rate", missing_rate), ("local_rate", local_rate)):
            if not isinstance(value, numbers.Real) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        if n_tasks is not None and (not isinstance(n_tasks, numbers.Integral) or n_tasks < 1):
            raise ValueError(f"n_tasks must be a positive integer or None, got {n_tasks!r}")
        self.n_tasks, self.n_way, self.k_shot, self.n_query = n_tasks, n_way, k_shot, n_query
        self.max_features = int(max_features)
        self.categorical_rate, self.constant_rate, self.missing_rate = categorical_rate, constant_rate, missing_rate
        self.local_rate = local_rate
        self.random_state = random_state
        self._generator = None

    def _new_generator(self, seed):
        # Graphs of random size and rejection sampling: numpy's stream, one task at a time.
        return np.random.RandomState(seed)

    def _draw(self, rng, n_tasks):
        for _ in range(n_tasks):
            yield self._sample(rng)

    def _sample(self, rng):
        n_way = rng.randint(self._n_way[0], self._n_way[1] + 1)
        k_shot = rng.randint(self._k_shot[0], self._k_shot[1] + 1)
        n_query = rng.randint(self._n_query[0], self._n_query[1] + 1)
        n_features = int(np.clip(np.round(np.exp(rng.uniform(0, np.log(self.max_features + 0.5)))),
                                 1, self.max_features))
        while True:
            nodes = self._graph(rng, 2 * n_way * (k_shot + n_query), n_features + n_way)
            picked = rng.choice(nodes.shape[1], n_features, replace=False)
            X, y = self._features(rng, nodes[:, picked]), self._labels(rng, nodes, n_way, picked)
            classes, counts = np.unique(y, return_counts=True)
            kept = classes[counts >= k_shot + n_query]
            if len(kept) >= 2:
                break
        picks = [rng.permutation(np.flatnonzero(y == c))[: k_shot + n_query] for c in kept]
        support = np.concatenate([p[:k_shot] for p in picks])
        query = np.concatenate([p[k_shot:] for p in picks])
        return Task(
            torch.as_tensor(X[support]),
            torch.arange(len(kept)).repeat_interleave(k_shot),
            torch.as_tensor(X[query]),
            torch.arange(len(kept)).repeat_interleave(n_query),
        )

    @staticmethod
    def _graph(rng, n_rows, n_needed):
        """Node values (n_rows, n_nodes) of a random MLP-shaped causal model."""
        n_layers = rng.randint(1, 5)
        width = max(rng.randint(4, 33), -(-n_needed // n_layers))
        # Causes: Gaussian or uniform, some rows from a few clusters (real
        # tables are often mixtures).
        Z = rng.randn(n_rows, width) if rng.rand() < 0.5 else rng.uniform(-1.7, 1.7, (n_rows, width))
        if rng.rand() < 0.3:
            centres = rng.randn(rng.randint(2, 6), width) * 2
            Z = Z + centres[rng.randint(len(centres), size=n_rows)]
        noise = np.exp(rng.uniform(np.log(0.01), np.log(0.5)))
        layers = []
        for _ in range(n_layers):
            density = rng.uniform(0.2, 1.0)
            W = rng.randn(width, width) * (rng.rand(width, width) < density) / np.sqrt(width * density)
            activation = _ACTIVATIONS[rng.randint(len(_ACTIVATIONS))]
            Z = _standardise(activation(Z @ W + rng.randn(width)) + noise * rng.randn(n_rows, width))
            layers.append(Z)
        return np.concatenate(layers, 1)

    def _features(self, rng, X):
        n_features = X.shape[1]
        X = X + np.exp(rng.uniform(np.log(0.01), np.log(0.3))) * rng.randn(*X.shape)
        skewed = rng.rand(n_features) < 0.15
        X[:, skewed] = np.exp(np.clip(X[:, skewed], -5, 5))
        categorical = rng.rand(n_features) < self.categorical_rate
        for j in np.flatnonzero(categorical):
            n_levels = rng.randint(2, 9)
            cuts = np.quantile(X[:, j], np.sort(rng.uniform(0, 1, n_levels - 1)))
            X[:, j] = rng.permutation(n_levels)[np.searchsorted(cuts, X[:, j])]
        numeric = ~categorical
        X[:, numeric] = X[:, numeric] * np.exp(rng.uniform(-3, 3, numeric.sum())) + rng.uniform(-10, 10, numeric.sum())
        constant = rng.rand(n_features) < self.constant_rate
        X[:, constant] = rng.uniform(-5, 5, constant.sum())
        if rng.rand() < self.missing_rate:
            affected = rng.rand(n_features) < 0.5
            X[:, affected] = np.where(rng.rand(len(X), affected.sum()) < rng.uniform(0, 0.3), np.nan, X[:, affected])
        return X.astype(np.float32)

    def _labels(self, rng, nodes, n_way, features):
        if rng.rand() < self.local_rate:
            # Nearest prototype in a few of the features' nodes: classes as
            # unions of regions of the feature space.
            space = nodes[:, rng.choice(features, min(rng.randint(1, 9), len(features)), replace=False)]
            n_prototypes = rng.randint(n_way, 4 * n_way + 1)
            prototypes = space[rng.choice(len(space), n_prototypes, replace=False)]
            owner = rng.permutation(np.concatenate([np.arange(n_way), rng.randint(n_way, size=n_prototypes - n_way)]))
            noisy = space + rng.uniform(0, 0.3) * rng.randn(*space.shape)
            return owner[((noisy[:, None, :] - prototypes[None]) ** 2).sum(-1).argmin(1)]
        if rng.rand() < 0.5:
            # Thresholds at random quantiles of one node: ordered classes of
            # random sizes.
            target = nodes[:, rng.randint(nodes.shape[1])]
            target = target + rng.uniform(0, 0.3) * rng.randn(len(target))
            proportions = np.cumsum(rng.dirichlet(np.full(n_way, 5.0)))[:-1]
            return np.searchsorted(np.quantile(target, proportions), target)
        # Argmax over n_way nodes: classes as regions of a random function.
        targets = nodes[:, rng.choice(nodes.shape[1], n_way, replace=nodes.shape[1] < n_way)]
        return (targets + rng.uniform(0, 0.3) * rng.randn(*targets.shape)).argmax(1)


def make_prior_tasks(n_tasks=None, *, n_way=(2, 10), k_shot=(1, 10), n_query=(5, 15), max_features=100,
                     categorical_rate=0.25, constant_rate=0.03, missing_rate=0.2, local_rate=0.3,
                     random_state=None):
    """Classification tasks from a random causal-model prior, as a task collection.

    The collection of :class:`PriorTasks` (see there for the prior): pass
    it to ``meta_fit`` of a learner across datasets, such as
    :class:`~skmeta.tabular.InContextClassifier`.

    Parameters
    ----------
    n_tasks : int or None, default=None
        Tasks per pass; None is endless.

    n_way, k_shot, n_query, max_features, categorical_rate, constant_rate, missing_rate, local_rate
        As in :class:`PriorTasks`.

    random_state : int, RandomState instance or None, default=None
        Seeds the task stream.

    Returns
    -------
    tasks : PriorTasks

    References
    ----------
    Hollmann, N., Mueller, S., Eggensperger, K. and Hutter, F. (2023).
    TabPFN: a transformer that solves small tabular classification
    problems in a second. ICLR.

    Examples
    --------
    >>> from skmeta.datasets import make_prior_tasks
    >>> task = next(iter(make_prior_tasks(n_way=4, k_shot=1, n_query=3, random_state=1)))
    >>> task.n_way, len(task.y_query)
    (4, 12)
    """
    return PriorTasks(n_tasks=n_tasks, n_way=n_way, k_shot=k_shot, n_query=n_query, max_features=max_features,
                      categorical_rate=categorical_rate, constant_rate=constant_rate,
                      missing_rate=missing_rate, local_rate=local_rate, random_state=random_state)
