"""Episodic evaluation: an N-way K-shot CV splitter and confidence intervals.

Few-shot learners are evaluated on many small tasks (episodes) drawn from
classes never seen in meta-training, and the mean accuracy is reported with a
95% confidence interval. :class:`EpisodicSplit` turns that protocol into a
scikit-learn cross-validator, so that ``cross_val_score`` gives one score per
episode; :func:`mean_confidence_interval` summarises those scores.
"""

import numbers
import sys
import warnings

import numpy as np
import torch
from scipy import stats
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils import check_random_state, check_scalar, indexable
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import column_or_1d

from ._evaluation import EpisodeScores, evaluate_episodes
from .tasks._stream import ClassPool, check_episode_shape
from ._meta_search import MetaSearchCV

__all__ = [
    "EpisodeScores",
    "EpisodicSplit",
    "evaluate_episodes",
    "MetaSearchCV",
    "format_confidence_interval",
    "mean_confidence_interval",
]


class EpisodicSplit(BaseCrossValidator):
    """N-way K-shot episodic cross-validator.

    Yields ``(support, query)`` indices for ``n_episodes`` few-shot episodes,
    the evaluation protocol of Vinyals et al. (2016): each episode draws
    ``n_way`` distinct classes among those present in `y`, then, from each
    chosen class and without replacement, ``k_shot`` support examples and
    ``n_query`` different query examples. Used as ``cv`` in
    :func:`~sklearn.model_selection.cross_val_score`, an estimator is fitted
    on each support set and scored on its query set, giving one score per
    episode; summarise them with :func:`mean_confidence_interval`.

    Like :class:`~sklearn.model_selection.StratifiedShuffleSplit`, episodes
    are drawn independently, so query sets of different episodes may
    overlap.

    Parameters
    ----------
    n_way : int, default=5
        Number of classes per episode. At least 2.

    k_shot : int, default=1
        Number of support (training) examples per class. At least 1.

    n_query : int or None, default=15
        Number of query (test) examples per class. If None, all the examples
        of the chosen classes that are not in the support set form the query
        set.

    n_episodes : int, default=600
        Number of episodes, i.e. of splits. 600 is the usual number in the
        few-shot literature.

    random_state : int, RandomState instance or None, default=None
        Controls which classes and examples each episode draws.
        Pass an int for the same episodes on every call to `split`.
        See :term:`Glossary <random_state>`.

    See Also
    --------
    sklearn.model_selection.StratifiedShuffleSplit : Class-wise stratified random splits of all the
        classes.
    mean_confidence_interval : Mean score over episodes with its confidence
        interval.

    Notes
    -----
    Only classes with at least ``k_shot + n_query`` examples (``k_shot + 1``
    when ``n_query`` is None) can be drawn; the others are left out of every
    episode.

    Within an episode, both index arrays are grouped by class, in the
    episode's (random) class order; examples within a class are in random
    order. Support indices are thus ``n_way`` runs of ``k_shot``, which is the
    layout prototype-based learners reshape into ``(n_way, k_shot)``.

    With :class:`~sklearn.model_selection.GridSearchCV`, pass
    ``refit=False``: refitting the best candidate on the pooled evaluation
    set is not a few-shot task.

    References
    ----------
    .. [1] O. Vinyals, C. Blundell, T. Lillicrap, K. Kavukcuoglu and
       D. Wierstra, "Matching Networks for One Shot Learning", NeurIPS 2016.
    .. [2] J. Snell, K. Swersky and R. Zemel, "Prototypical Networks for
       Few-shot Learning", NeurIPS 2017.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import cross_val_score
    >>> from sklearn.neighbors import NearestCentroid
    >>> from skmeta.model_selection import EpisodicSplit
    >>> X, y = load_digits(return_X_y=True)
    >>> cv = EpisodicSplit(n_way=5, k_shot=5, n_query=15, n_episodes=20,
    ...                    random_state=0)
    >>> cv
    EpisodicSplit(k_shot=5, n_episodes=20, n_query=15, n_way=5, random_state=0)
    >>> support, query = next(cv.split(X, y))
    >>> support.shape, query.shape
    ((25,), (75,))
    >>> scores = cross_val_score(NearestCentroid(), X, y, cv=cv)
    >>> len(scores)
    20
    """

    # Episodes drawn per vectorised call.
    _chunk = 64

    def __init__(
        self, n_way=5, k_shot=1, n_query=15, n_episodes=600, random_state=None
    ):
        self.n_way = n_way
        self.k_shot = k_shot
        self.n_query = n_query
        self.n_episodes = n_episodes
        self.random_state = random_state

    def _check_params(self):
        # Checked at use rather than in __init__, as scikit-learn's
        # ShuffleSplit does, so that set attributes are checked too; the
        # bounds are those of every episode source (skmeta.tasks).
        check_episode_shape(self.n_way, self.k_shot, self.n_query, self.n_episodes,
                            n_query_none=True, n_tasks_none=False, n_tasks_name="n_episodes")

    def split(self, X, y, groups=None):
        """Generate support and query indices for each episode.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data. Only its length is used, so ``np.zeros(n_samples)``
            may stand in for it.

        y : array-like of shape (n_samples,)
            Class labels; episodes are drawn over the classes present.

        groups : array-like of shape (n_samples,), default=None
            Always ignored, exists for API compatibility.

        Yields
        ------
        support : ndarray of shape (n_way * k_shot,)
            The support (training) set indices of the episode, grouped by
            class.

        query : ndarray
            The query (test) set indices of the episode, grouped by class in
            the same class order; ``n_way * n_query`` of them unless
            ``n_query`` is None.

        Notes
        -----
        With an int `random_state`, every call yields the same episodes; with
        a RandomState instance or None, each call draws new ones.
        """
        if groups is not None:
            warnings.warn(
                f"The groups parameter is ignored by {self.__class__.__name__}",
                UserWarning,
            )
        if y is None:
            raise ValueError(
                f"{self.__class__.__name__} needs the class labels y to draw "
                "episodes; got y=None."
            )
        X, y, groups = indexable(X, y, groups)
        y = column_or_1d(y, warn=True)
        self._warn_if_refit_search()
        yield from self._iter_indices(X, y, groups)

    def _warn_if_refit_search(self):
        # A search that refits (GridSearchCV's default refit=True) would fit
        # the best candidate on the whole pooled evaluation set, which is not
        # a few-shot task; say so when the search starts rather than let it
        # run silently. The search is the caller that holds this splitter as
        # its cv, a few frames up (scikit-learn's check_cv keeps the object).
        frame = sys._getframe(2)
        for _ in range(8):
            if frame is None:
                return
            owner = frame.f_locals.get("self")
            if getattr(owner, "cv", None) is self and hasattr(owner, "refit") and owner.refit is not False:
                warnings.warn(
                    f"{type(owner).__name__}(refit={owner.refit!r}) with {type(self).__name__} will refit the "
                    "best candidate on the whole pooled evaluation set, which is not a few-shot task; "
                    "pass refit=False and adapt the learner to a support set with fit",
                    UserWarning,
                    stacklevel=4,
                )
                return
            frame = frame.f_back

    def _iter_indices(self, X, y, groups=None):
        self._check_params()
        target_type = type_of_target(y, input_name="y")
        if target_type not in ("binary", "multiclass"):
            raise ValueError(
                "Supported target types are: ('binary', 'multiclass'). "
                f"Got {target_type!r} instead."
            )
        classes, y_encoded, class_counts = np.unique(
            y, return_inverse=True, return_counts=True
        )
        n_classes = classes.shape[0]
        if self.n_way > n_classes:
            raise ValueError(
                f"n_way={self.n_way} but y has only {n_classes} classes."
            )
        if self.n_query is None:
            n_needed = self.k_shot + 1
            needed = f"k_shot + 1 = {n_needed} (n_query=None)"
        else:
            n_needed = self.k_shot + self.n_query
            needed = f"k_shot + n_query = {n_needed}"
        eligible = np.flatnonzero(class_counts >= n_needed)
        if eligible.shape[0] < self.n_way:
            raise ValueError(
                f"n_way={self.n_way} episodes need {needed} examples per "
                f"class, but only {eligible.shape[0]} of the {n_classes} "
                "classes in y have that many."
            )

        # The episodes of every task collection, drawn by the same index
        # arithmetic (skmeta.tasks), on a torch stream seeded from rng.
        pool = ClassPool(y_encoded, n_classes)
        rng = check_random_state(self.random_state)
        generator = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        n_per_class = None if self.n_query is None else n_needed
        for start in range(0, self.n_episodes, self._chunk):
            # Whole chunks, cut to length: the first n episodes are the same
            # whatever n_episodes is.
            index, _, counts = pool.draw(generator, self._chunk, self.n_way, n_per_class, classes=eligible)
            n = min(self._chunk, self.n_episodes - start)
            index, counts = index[:n].numpy(), counts[:n].numpy()
            for members, sizes in zip(index, counts):
                if self.n_query is None:
                    query = np.concatenate([row[self.k_shot : size] for row, size in zip(members, sizes)])
                else:
                    query = members[:, self.k_shot :].reshape(-1)
                yield members[:, : self.k_shot].reshape(-1), query

    def get_n_splits(self, X=None, y=None, groups=None):
        """Return the number of episodes, ``n_episodes``.

        Parameters
        ----------
        X : object
            Always ignored, exists for API compatibility.

        y : object
            Always ignored, exists for API compatibility.

        groups : object
            Always ignored, exists for API compatibility.

        Returns
        -------
        n_splits : int
            The number of episodes yielded by `split`.
        """
        self._check_params()
        return self.n_episodes


def mean_confidence_interval(scores, confidence=0.95):
    """Mean of per-episode scores and the half-width of its confidence interval.

    Few-shot results are reported as mean accuracy over episodes plus or
    minus ``q * std / sqrt(n)``. Here ``std`` is the sample standard deviation
    (``ddof=1``) and ``q`` the Student t quantile with ``n - 1`` degrees of
    freedom. Papers usually take the normal quantile 1.96 for 95%; for the
    usual 600 episodes the t quantile is 1.964, so half-widths differ by
    0.2%, and they agree as the number of episodes grows.

    Parameters
    ----------
    scores : array-like of shape (n_episodes,)
        One score per episode, e.g. the output of
        :func:`~sklearn.model_selection.cross_val_score` with
        :class:`EpisodicSplit`. At least two finite values.

    confidence : float, default=0.95
        Confidence level, strictly between 0 and 1.

    Returns
    -------
    mean : float
        Mean score over episodes.

    half_width : float
        Half-width of the confidence interval: the interval is
        ``[mean - half_width, mean + half_width]``.

    See Also
    --------
    format_confidence_interval : The same, as a string.
    EpisodicSplit : Draws the episodes.

    References
    ----------
    .. [1] J. Snell, K. Swersky and R. Zemel, "Prototypical Networks for
       Few-shot Learning", NeurIPS 2017.

    Examples
    --------
    >>> from skmeta.model_selection import mean_confidence_interval
    >>> mean, half_width = mean_confidence_interval([0.6, 0.8, 0.7, 0.9])
    >>> print(f"{mean:.2f} +- {half_width:.2f}")
    0.75 +- 0.21
    """
    check_scalar(
        confidence,
        "confidence",
        numbers.Real,
        min_val=0,
        max_val=1,
        include_boundaries="neither",
    )
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(
            f"scores should be 1-D, one score per episode; got shape "
            f"{scores.shape}."
        )
    n = scores.shape[0]
    if n < 2:
        raise ValueError(
            f"A confidence interval needs at least 2 scores; got {n}."
        )
    if not np.all(np.isfinite(scores)):
        n_bad = int(np.sum(~np.isfinite(scores)))
        raise ValueError(
            f"scores contain {n_bad} NaN or infinite values out of {n}."
        )
    mean = scores.mean()
    if np.ptp(scores) == 0:  # scipy's interval is (nan, nan) for a zero standard error
        return float(mean), 0.0
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=stats.sem(scores))
    return float(mean), float((high - low) / 2)


def format_confidence_interval(scores, confidence=0.95, percent=True):
    """Format per-episode scores as ``"mean +- half_width"``.

    Parameters
    ----------
    scores : array-like of shape (n_episodes,)
        One score per episode, as for :func:`mean_confidence_interval`.

    confidence : float, default=0.95
        Confidence level, strictly between 0 and 1.

    percent : bool, default=True
        If True, scores in [0, 1] are shown as percentages with two decimals
        and a ``" %"`` suffix, as papers report accuracy; otherwise as they
        are, with four decimals.

    Returns
    -------
    text : str
        For example ``"97.31 +- 0.42 %"``.

    See Also
    --------
    mean_confidence_interval : The numbers behind the string.

    Examples
    --------
    >>> from skmeta.model_selection import format_confidence_interval
    >>> format_confidence_interval([0.6, 0.8, 0.7, 0.9])
    '75.00 +- 20.54 %'
    >>> format_confidence_interval([0.6, 0.8, 0.7, 0.9], percent=False)
    '0.7500 +- 0.2054'
    """
    mean, half_width = mean_confidence_interval(scores, confidence=confidence)
    if percent:
        return f"{100 * mean:.2f} +- {100 * half_width:.2f} %"
    return f"{mean:.4f} +- {half_width:.4f}"
