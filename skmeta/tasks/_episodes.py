"""Tasks, and the episodes of one pool of examples."""

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.nn import functional as F

from ._stream import ClassPool, TaskStream, check_episode_shape

__all__ = ["Task", "EpisodeSampler", "random_affine", "rotate_classes"]


@dataclass
class Task:
    """One few-shot episode.

    Parameters
    ----------
    X_support, y_support : array-like or torch.Tensor
        The labelled examples to adapt on.

    X_query : array-like or torch.Tensor
        The examples to predict.

    y_query : array-like or torch.Tensor, default=None
        Their labels, when known (always during meta-training).

    classes : array-like, default=None
        For sampled episodes: the original label of each episode label
        ``0 .. n_way - 1``, for inspection.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.tasks import Task
    >>> task = Task(np.zeros((2, 3)), [0, 1], np.ones((4, 3)), [1, 1, 0, 0])
    >>> task.n_way
    2
    """

    X_support: Any
    y_support: Any
    X_query: Any
    y_query: Any = None
    classes: Any = None

    @property
    def n_way(self):
        """Number of distinct classes in the support set."""
        y = self.y_support
        return int(torch.unique(y).numel()) if torch.is_tensor(y) else len(np.unique(np.asarray(y)))


def rotate_classes(angles=(90, 180, 270), image_shape=None):
    """Class augmentation: every rotation of a class is a new class.

    The augmentation of Santoro et al. (2016) and Snell et al. (2017) for
    Omniglot: rotating all images of a character by 90, 180 and 270 degrees
    makes three more characters.

    Parameters
    ----------
    angles : tuple of int, default=(90, 180, 270)
        Multiples of 90 degrees to add, counter-clockwise.

    image_shape : tuple of int, default=None
        ``(height, width)`` or ``(channels, height, width)`` for flattened
        input; square single-channel images are assumed when None.

    Returns
    -------
    augment : callable
        ``augment(X, y) -> (X, y)`` on a tensor pool and integer class codes;
        rotated copies get codes ``code + (i + 1) * n_classes``.

    Examples
    --------
    >>> import torch
    >>> from skmeta.tasks import rotate_classes
    >>> X, y = torch.arange(8.).reshape(2, 4), torch.tensor([0, 1])
    >>> X_aug, y_aug = rotate_classes((90,))(X, y)
    >>> X_aug.shape, y_aug.tolist()
    (torch.Size([4, 4]), [0, 1, 2, 3])
    """
    for angle in angles:
        if angle % 90:
            raise ValueError(f"rotate_classes takes multiples of 90 degrees, got {angle}")

    def augment(X, y):
        images, shape = _as_images(X, image_shape)
        n_classes = int(y.max()) + 1
        Xs, ys = [X], [y]
        for i, angle in enumerate(angles):
            rotated = torch.rot90(images, k=angle // 90, dims=(-2, -1))
            Xs.append(rotated.reshape(shape))
            ys.append(y + (i + 1) * n_classes)
        return torch.cat(Xs), torch.cat(ys)

    return augment


def _as_images(X, image_shape):
    """``X`` as (n, channels, height, width), and the shape to return it in."""
    if X.dim() == 2:
        side = int(round(X.shape[1] ** 0.5))
        shape = tuple(image_shape or (side, side))
        if int(np.prod(shape)) != X.shape[1]:
            raise ValueError(f"cannot view {X.shape[1]} features as images of shape {shape}; pass image_shape")
        return X.reshape(len(X), -1, *shape[-2:]), X.shape
    if X.dim() == 3:
        return X.unsqueeze(1), X.shape
    if X.dim() == 4:
        return X, X.shape
    raise ValueError(f"images must be flat, (n, height, width) or (n, channels, height, width); "
                     f"got shape {tuple(X.shape)}")


def random_affine(rotation=10.0, shift=0.1, scale=0.1, shear=0.1, image_shape=None):
    """Example augmentation: a new small affine distortion of every image
    each time an episode draws it.

    Rotation, shear, per-axis scale and shift are drawn uniformly and
    independently for every example of every episode, from the sampler's
    random stream (so a seeded sampler stays reproducible). The image is
    resampled bilinearly; pixels from outside it take the value of the
    nearest border pixel (the background, for centred characters). Where
    :func:`rotate_classes` makes new classes, this makes new examples of
    the same class: the small shifts, scales and shears of handwriting.

    Parameters
    ----------
    rotation : float, default=10.0
        Largest rotation, in degrees either way.

    shift : float, default=0.1
        Largest shift, as a fraction of the image's width (height) either way.

    scale : float, default=0.1
        Largest relative change of each axis's scale either way.

    shear : float, default=0.1
        Largest shear factor either way.

    image_shape : tuple of int, default=None
        ``(height, width)`` or ``(channels, height, width)`` for flattened
        input; square single-channel images are assumed when None.

    Returns
    -------
    transform : callable
        ``transform(X, generator) -> X`` on a tensor of examples, for
        ``EpisodeSampler(transform=...)``.

    Examples
    --------
    >>> import torch
    >>> from skmeta.tasks import random_affine
    >>> X = torch.zeros(3, 28, 28)
    >>> X[:, 10:18, 12:16] = 1.0
    >>> out = random_affine()(X, torch.Generator().manual_seed(0))
    >>> out.shape, bool((out != X).any()), round(float(out.sum() / X.sum()), 1)
    (torch.Size([3, 28, 28]), True, 1.0)
    """
    for name, value in (("rotation", rotation), ("shift", shift), ("scale", scale), ("shear", shear)):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if scale >= 1:
        raise ValueError(f"scale must be below 1 (a relative change), got {scale!r}")

    def transform(X, generator):
        images, shape = _as_images(X, image_shape)
        n = len(images)

        def uniform(bound):
            return (2 * torch.rand(n, generator=generator) - 1) * bound

        angle, cut = uniform(np.deg2rad(rotation)), uniform(shear)
        sx, sy = 1 + uniform(scale), 1 + uniform(scale)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # Output-to-input map in normalised coordinates: rotate . shear . scale, then shift.
        theta = torch.stack([
            torch.stack([cos * sx, (cos * cut - sin) * sy, 2 * uniform(shift)], 1),
            torch.stack([sin * sx, (sin * cut + cos) * sy, 2 * uniform(shift)], 1),
        ], 1).to(images)  # the pool's device and dtype
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.reshape(shape)

    return transform


class EpisodeSampler(TaskStream):
    """N-way K-shot episodes sampled from a labelled pool.

    The pool is converted to one tensor once; an episode is index arithmetic
    on it (random class choice, random example choice per class), made for
    many episodes at a time, so sampling costs microseconds per episode.

    Each pass over the sampler yields ``n_tasks`` new episodes from one
    random stream (seeded by ``random_state``): meta-training sees fresh
    episodes every epoch. For a fixed set, e.g. for validation, take
    ``list(sampler)``.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_samples, ...)
        The pool, flattened or N-D (e.g. images).

    y : array-like of shape (n_samples,)
        Class labels, any hashable values.

    n_way : int
        Classes per episode.

    k_shot : int
        Support examples per class.

    n_query : int
        Query examples per class.

    n_tasks : int or None, default=None
        Episodes per pass. None makes the sampler endless (it cannot be
        used directly by ``meta_fit``, which needs passes of known length).

    augment : callable or None, default=None
        ``augment(X, codes) -> (X, codes)`` applied once to the pool, e.g.
        :func:`rotate_classes` for Omniglot.

    transform : callable or None, default=None
        ``transform(X, generator) -> X`` applied to the examples of every
        episode when it is drawn, with the sampler's random generator,
        e.g. :func:`random_affine`: each pass sees new versions of the
        examples.

    random_state : int, RandomState instance or None, default=None
        Seeds the episode stream.

    Attributes
    ----------
    classes_ : ndarray
        Original labels, indexed by class code; augmented classes map to the
        label of the class they were made from.

    n_classes_ : int
        Number of classes after augmentation.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skmeta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> sampler = EpisodeSampler(X, y, n_way=5, k_shot=1, n_query=3, n_tasks=10, random_state=0)
    >>> task = next(iter(sampler))
    >>> tuple(task.X_support.shape), task.y_support.tolist()
    ((5, 64), [0, 1, 2, 3, 4])
    >>> tuple(task.X_query.shape)
    (15, 64)
    """

    # Episodes drawn per vectorised call; large enough to amortise the Python
    # overhead, small enough that the index block stays in cache.
    _chunk = 64

    def __init__(
        self,
        X,
        y,
        n_way,
        k_shot,
        n_query,
        n_tasks=None,
        augment: Optional[Callable] = None,
        transform: Optional[Callable] = None,
        random_state=None,
    ):
        check_episode_shape(n_way, k_shot, n_query, n_tasks)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        self.n_way, self.k_shot, self.n_query, self.n_tasks = int(n_way), int(k_shot), int(n_query), n_tasks
        self.augment = augment
        self.transform = transform
        self.random_state = random_state

        X = _pool_tensor(X)
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, one label per example; got shape {y.shape}")
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0]}")
        classes, codes = _encode_labels(y)
        codes = torch.as_tensor(codes, dtype=torch.long)
        if augment is not None:
            n_original = len(classes)
            X, codes = augment(X, codes)
            classes = classes[np.arange(int(codes.max()) + 1) % n_original]
        self.classes_ = classes
        self.n_classes_ = len(classes)

        self._pool = ClassPool(codes, self.n_classes_)
        counts = self._pool.counts
        needed = self.k_shot + self.n_query
        if self.n_classes_ < self.n_way:
            raise ValueError(f"n_way={self.n_way} but the pool has only {self.n_classes_} classes")
        short = torch.nonzero(counts < needed).flatten()
        if len(short):
            first = int(short[0])
            label = classes[first : first + 1].tolist()[0]  # a plain Python value for the message
            raise ValueError(
                f"k_shot + n_query = {needed} examples per class are needed, but {len(short)} "
                f"classes have fewer (class {label!r} has {int(counts[first])}); "
                "drop those classes or lower k_shot / n_query"
            )
        self._X = X
        self._generator = None

    def pool(self):
        """The pool as ``(X, codes)``, sorted by class code: the examples
        meta-training draws from, with augmented classes kept apart.

        Returns
        -------
        X : torch.Tensor of shape (n_samples, ...)
        codes : torch.Tensor of shape (n_samples,)
            Class codes, indexing ``classes_``.
        """
        codes = torch.repeat_interleave(torch.arange(self.n_classes_), self._pool.counts)
        return self._X[self._pool.order], codes

    def _draw(self, generator, n_episodes):
        n_way, k_shot = self.n_way, self.k_shot
        index, chosen, _ = self._pool.draw(generator, n_episodes, n_way, k_shot + self.n_query)
        X = self._X[index]  # (n_episodes, n_way, k_shot + n_query, ...)
        feature_shape = X.shape[3:]
        if self.transform is not None:
            X = self.transform(X.reshape(-1, *feature_shape), generator).reshape(X.shape)
        y_support = torch.arange(n_way).repeat_interleave(k_shot)
        y_query = torch.arange(n_way).repeat_interleave(self.n_query)
        for i in range(n_episodes):
            yield Task(
                X[i, :, :k_shot].reshape(-1, *feature_shape),
                y_support,
                X[i, :, k_shot:].reshape(-1, *feature_shape),
                y_query,
                classes=self.classes_[chosen[i].numpy()],
            )


def _pool_tensor(X):
    """A pool of examples as one float32 tensor, checked: numeric, real, finite."""
    if torch.is_tensor(X):
        if X.is_complex():
            raise TypeError("X is complex; meta-learners take real-valued features")
        X = X.detach().to(torch.float32)
    else:
        array = np.asarray(X)
        if np.iscomplexobj(array):
            raise TypeError("X is complex; meta-learners take real-valued features")
        try:
            with np.errstate(over="ignore"):  # beyond float32's range becomes inf, rejected below
                X = torch.from_numpy(np.array(array, dtype=np.float32))
        except (TypeError, ValueError):
            raise TypeError(f"X has non-numeric values (dtype {array.dtype})") from None
    if X.dim() < 2:
        raise ValueError(f"X must have one row per example, shape (n_samples, ...); got shape {tuple(X.shape)}")
    if not torch.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values (or values beyond float32's range, about 3.4e38)")
    return X


def _encode_labels(y):
    """``(classes, codes)`` of a label array; TypeError for labels of mixed types."""
    try:
        return np.unique(y, return_inverse=True)
    except TypeError:
        kinds = sorted({type(label).__name__ for label in y.tolist()})
        raise TypeError(f"y mixes label types ({', '.join(kinds)}); use one type") from None
