"""Class splits, and episodes across a collection of datasets."""

import numpy as np
import torch
from sklearn.utils import check_random_state

from ._episodes import Task, _encode_labels, _pool_tensor
from ._stream import ClassPool, TaskStream, check_episode_shape

__all__ = ["split_classes", "DatasetCollection"]


def split_classes(y, train_size=0.5, random_state=None):
    """Split the classes of ``y`` between meta-training and meta-testing.

    Few-shot evaluation needs classes never seen in meta-training: every
    example of a class goes to the same side, like scikit-learn's
    :class:`~sklearn.model_selection.GroupShuffleSplit` with the labels as
    groups.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.

    train_size : float or int, default=0.5
        Meta-training classes: a fraction of the classes (float in (0, 1),
        rounded, at least one class on each side) or a number of classes.

    random_state : int, RandomState instance or None, default=None
        Which classes go where.

    Returns
    -------
    train, test : ndarray of int
        Indices of the examples of the meta-training and meta-test classes.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.tasks import split_classes
    >>> y = np.repeat(list("abcdef"), 2)
    >>> train, test = split_classes(y, train_size=4, random_state=0)
    >>> np.unique(y[train]).tolist(), np.unique(y[test]).tolist()
    (['b', 'c', 'd', 'f'], ['a', 'e'])
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {y.shape}")
    classes = np.unique(y)
    n_classes = len(classes)
    if n_classes < 2:
        raise ValueError(f"splitting classes needs at least 2 of them; y has {n_classes}")
    if isinstance(train_size, (float, np.floating)) and 0 < train_size < 1:
        n_train = min(max(int(round(train_size * n_classes)), 1), n_classes - 1)
    elif isinstance(train_size, (int, np.integer)) and not isinstance(train_size, bool) and 1 <= train_size < n_classes:
        n_train = int(train_size)
    else:
        raise ValueError(
            f"train_size must be a fraction in (0, 1) or a number of classes in [1, {n_classes - 1}], "
            f"got {train_size!r}"
        )
    train_classes = check_random_state(random_state).permutation(classes)[:n_train]
    is_train = np.isin(y, train_classes)
    return np.flatnonzero(is_train), np.flatnonzero(~is_train)


def _bounds(name, value, low):
    """``(min, max)`` of an int or an inclusive ``(min, max)`` range, checked."""
    bounds = (value, value) if isinstance(value, (int, np.integer)) else tuple(value) if isinstance(value, (tuple, list)) else None
    if (
        bounds is None
        or len(bounds) != 2
        or not all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in bounds)
        or not low <= bounds[0] <= bounds[1]
    ):
        raise ValueError(f"{name} must be an integer >= {low} or a range (min, max) of them, got {value!r}")
    return int(bounds[0]), int(bounds[1])


class DatasetCollection(TaskStream):
    """Episodes drawn across a collection of datasets with different features.

    Each episode picks a dataset at random, then ``n_way`` of its classes
    and ``k_shot + n_query`` examples of each, the way
    :class:`EpisodeSampler` does within one pool. Datasets keep their own
    features: episodes from different datasets have different numbers and
    meanings of columns, which is what a learner across datasets (such as
    :class:`~skmeta.tabular.FeatureVoteClassifier`) meta-trains on. A range
    of ways and shots makes one learner for every episode shape.

    Each pass yields ``n_tasks`` new episodes from one random stream; its
    position is saved with a meta-trained learner, so meta-training resumes
    on the episodes it would have drawn.

    Parameters
    ----------
    datasets : sequence of (X, y) pairs, or dict of name to (X, y)
        Numeric feature matrices (encode nominal features first, e.g. with
        :class:`~sklearn.preprocessing.OneHotEncoder`) and their labels.
        A :class:`~sklearn.utils.Bunch` with ``data`` and ``target`` also
        works as a pair.

    n_way : int or (int, int), default=(2, 5)
        Classes per episode, or an inclusive range drawn from uniformly per
        episode; capped by each dataset's number of classes.

    k_shot : int or (int, int), default=(1, 10)
        Support examples per class, or an inclusive range, drawn per episode.

    n_query : int, default=10
        Query examples per class.

    n_tasks : int or None, default=None
        Episodes per pass; None is endless.

    random_state : int, RandomState instance or None, default=None
        Seeds the episode stream.

    Attributes
    ----------
    names_ : list of str
        Dataset names (the dict keys, or ``"0"``, ``"1"``, ...).

    n_classes_ : ndarray of int
        Classes per dataset.

    See Also
    --------
    EpisodeSampler : Episodes from one pool.
    split_classes : Meta-training and meta-test classes within one dataset.

    Examples
    --------
    >>> from sklearn.datasets import load_iris, load_wine
    >>> from skmeta.tasks import DatasetCollection
    >>> tasks = DatasetCollection({"iris": load_iris(return_X_y=True),
    ...                            "wine": load_wine(return_X_y=True)},
    ...                           n_way=2, k_shot=(1, 5), n_query=5, n_tasks=4, random_state=0)
    >>> [task.X_support.shape[1] for task in tasks]
    [4, 13, 13, 4]
    """

    def __init__(self, datasets, n_way=(2, 5), k_shot=(1, 10), n_query=10, n_tasks=None, random_state=None):
        self._n_way = _bounds("n_way", n_way, 2)
        self._k_shot = _bounds("k_shot", k_shot, 1)
        check_episode_shape(self._n_way[0], self._k_shot[0], n_query, n_tasks)
        self.n_way, self.k_shot, self.n_query, self.n_tasks = n_way, k_shot, int(n_query), n_tasks
        self.random_state = random_state

        if isinstance(datasets, (str, bytes)) or not hasattr(datasets, "__iter__"):
            raise TypeError(f"datasets must be a sequence of (X, y) pairs or a dict of them, got {type(datasets).__name__}")
        items = datasets.items() if isinstance(datasets, dict) else ((str(i), d) for i, d in enumerate(datasets))
        self.names_, self._pools = [], []
        needed = self._k_shot[1] + self.n_query
        for name, dataset in items:
            try:
                X, y = (dataset.data, dataset.target) if hasattr(dataset, "target") else dataset
            except (TypeError, ValueError):
                raise TypeError(f"dataset {name!r} must be an (X, y) pair, got {type(dataset).__name__}") from None
            try:
                X = _pool_tensor(X)
            except (TypeError, ValueError) as error:
                if "non-numeric" in str(error):
                    raise ValueError(
                        f"dataset {name!r} has non-numeric features; encode them first "
                        "(e.g. OneHotEncoder on its nominal columns)"
                    ) from None
                raise type(error)(f"dataset {name!r}: {error}") from None
            y = np.asarray(y)
            if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
                raise ValueError(f"dataset {name!r}: X must be 2-D with one row per label; got {tuple(X.shape)} and labels of shape {y.shape}")
            try:
                classes, codes = _encode_labels(y)
            except TypeError as error:
                raise TypeError(f"dataset {name!r}: {error}") from None
            pool = ClassPool(codes, len(classes))
            eligible = torch.nonzero(pool.counts >= needed).flatten()
            if len(eligible) < self._n_way[0]:
                raise ValueError(
                    f"dataset {name!r} has {len(eligible)} classes with at least k_shot + n_query = {needed} "
                    f"examples; episodes need {self._n_way[0]}"
                )
            self.names_.append(str(name))
            self._pools.append((X, classes, pool, eligible))
        if not self._pools:
            raise ValueError("the collection holds no datasets")
        self.n_classes_ = np.array([len(eligible) for *_, eligible in self._pools])
        self._generator = None

    def datasets(self):
        """The datasets as episodes see them: the rows of the classes large
        enough for an episode, with their labels.

        Returns
        -------
        datasets : list of (str, ndarray, ndarray)
            ``(name, X, y)`` per dataset, in the collection's order.
        """
        out = []
        for name, (X, classes, pool, eligible) in zip(self.names_, self._pools):
            rows = torch.cat([pool.order[pool.offsets[c]: pool.offsets[c] + pool.counts[c]] for c in eligible])
            codes = torch.repeat_interleave(eligible, pool.counts[eligible])
            out.append((name, X[rows].numpy(), classes[codes.numpy()]))
        return out

    def _draw(self, generator, n_episodes):
        for _ in range(n_episodes):
            yield self._episode(generator)

    def _episode(self, generator):
        def randint(low, high):  # inclusive bounds
            return int(torch.randint(low, high + 1, (1,), generator=generator))

        X, classes, pool, eligible = self._pools[randint(0, len(self._pools) - 1)]
        n_way = randint(self._n_way[0], min(self._n_way[1], len(eligible)))
        k_shot = randint(*self._k_shot)
        index, chosen, _ = pool.draw(generator, 1, n_way, k_shot + self.n_query, classes=eligible)
        index = index[0]
        return Task(
            X[index[:, :k_shot].reshape(-1)],
            torch.arange(n_way).repeat_interleave(k_shot),
            X[index[:, k_shot:].reshape(-1)],
            torch.arange(n_way).repeat_interleave(self.n_query),
            classes=classes[chosen[0].numpy()],
        )
