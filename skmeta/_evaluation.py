"""Episodic evaluation on any joblib backend: one process, loky, Dask, Ray."""

import math
import numbers
import os
import time
from dataclasses import dataclass

import joblib
import numpy as np
import torch
from sklearn.base import clone, is_classifier
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv
from sklearn.utils import _safe_indexing, check_scalar, indexable
from skorch.history import History

__all__ = ["EpisodeScores", "evaluate_episodes"]


@dataclass(frozen=True)
class EpisodeScores:
    """Per-episode scores of :func:`evaluate_episodes` and their summary.

    Parameters
    ----------
    scores : ndarray of shape (n_episodes,)
        One score per episode, in the order the splitter yields them.

    mean : float
        Mean score.

    half_width : float
        Half-width of the ``confidence`` interval of the mean
        (:func:`~skmeta.model_selection.mean_confidence_interval`).

    confidence : float
        Confidence level of the interval.

    fit_time, score_time : ndarray of shape (n_episodes,)
        Seconds spent adapting to each support set and scoring its queries,
        measured where the episode ran.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.model_selection import EpisodeScores
    >>> result = EpisodeScores(np.array([0.6, 0.8]), 0.7, 1.27, 0.95, np.zeros(2), np.zeros(2))
    >>> result.mean
    0.7
    """

    scores: np.ndarray
    mean: float
    half_width: float
    confidence: float
    fit_time: np.ndarray
    score_time: np.ndarray

    def __str__(self):
        from .model_selection import format_confidence_interval

        return format_confidence_interval(self.scores, self.confidence, percent=False)


def _evaluation_copy(learner):
    """The learner as workers need it: its meta-learning history (one record
    per meta-batch, the bulk of a long run's pickle) left behind."""
    if not isinstance(getattr(learner, "history_", None), History):
        return learner
    # A shallow copy by hand: copy.copy would go through skorch's
    # __getstate__, which serialises every module.
    slim = object.__new__(type(learner))
    slim.__dict__.update(learner.__dict__, history_=History())
    for name, value in learner.__dict__.items():
        # Methods bound to the learner (skorch's collate_fn) would carry it
        # along, history and all.
        if getattr(value, "__self__", None) is learner:
            slim.__dict__[name] = getattr(slim, value.__name__)
    return slim


def _run_episodes(learner, X, y, splits, scorer, parent_pid, torch_threads):
    """Adapt a clone of ``learner`` to each support set and score its queries."""
    in_worker = os.getpid() != parent_pid
    if in_worker:
        # Worker processes share the machine with their siblings: each runs
        # torch on ``torch_threads`` threads instead of one per core.
        threads = torch.get_num_threads()
        torch.set_num_threads(torch_threads)
    try:
        results = []
        # One clone per group: fit replaces all task state, so refitting one
        # clone equals fitting a fresh clone per episode (the contract's
        # ``fit(A); fit(B)`` equals ``fit(B)``), and a clone of a skorch net
        # costs a serialisation of its modules.
        episode = clone(learner)
        for support, query in splits:
            start = time.perf_counter()
            episode.fit(_safe_indexing(X, support), _safe_indexing(y, support))
            fitted = time.perf_counter()
            score = scorer(episode, _safe_indexing(X, query), _safe_indexing(y, query))
            results.append((float(score), fitted - start, time.perf_counter() - fitted))
        return results
    finally:
        if in_worker:
            torch.set_num_threads(threads)


def evaluate_episodes(
    learner,
    X,
    y,
    cv,
    *,
    scoring=None,
    n_jobs=None,
    backend=None,
    episodes_per_job="auto",
    torch_threads=1,
    confidence=0.95,
    verbose=0,
):
    """Score a learner on many few-shot episodes, in parallel on any joblib backend.

    For each episode of `cv` (e.g. :class:`~skmeta.model_selection.EpisodicSplit`),
    a clone of `learner` (which keeps what was meta-learned) is fitted on the
    support set and scored on the query set, as
    :func:`~sklearn.model_selection.cross_val_score` does; the scores are
    those of ``cross_val_score``, whatever the backend. Unlike
    ``cross_val_score``, which clones and sends the learner for every
    episode, episodes travel in groups of ``episodes_per_job``, with one
    copy of the learner per group (on Dask, one per worker) refitted for
    each episode of the group, and workers run torch on ``torch_threads``
    threads: many episodes of a large backbone spread over a cluster
    without moving the network thousands of times or oversubscribing
    cores.

    Parameters
    ----------
    learner : estimator
        Usually a meta-fitted skmeta learner; any scikit-learn estimator
        works.

    X : array-like of shape (n_samples, n_features) or (n_samples, ...)
        Examples of the evaluation classes.

    y : array-like of shape (n_samples,)
        Their labels.

    cv : cross-validation generator or int
        The episodes, usually an :class:`~skmeta.model_selection.EpisodicSplit`
        with an int ``random_state``.

    scoring : str, callable or None, default=None
        As in ``cross_val_score``; None uses the learner's ``score``
        (accuracy for classifiers).

    n_jobs : int or None, default=None
        Parallel jobs, as in joblib: None means 1 unless inside a
        ``joblib.parallel_config`` context, -1 means all workers.

    backend : str or None, default=None
        A joblib backend ("loky", "threading", "dask", "ray", ...) for this
        call; None uses the active one (e.g. set by
        ``joblib.parallel_config(backend="dask")`` around the call). With
        "dask", the learner and data are scattered to the workers once.

    episodes_per_job : int or "auto", default="auto"
        Episodes per joblib task; "auto" gives each worker about four
        tasks, which balances load while sending the learner few times.

    torch_threads : int, default=1
        Torch threads inside worker processes (restored after each task).
        In-process runs (serial or threading) keep the caller's setting.

    confidence : float, default=0.95
        Confidence level of the interval.

    verbose : int, default=0
        If positive, a progress bar over episodes.

    Returns
    -------
    result : EpisodeScores
        Per-episode scores (in the splitter's order), their mean and
        confidence interval, and per-episode fit and score times.

    See Also
    --------
    EpisodicSplit : Draws the episodes.
    mean_confidence_interval : The interval of the scores.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from skmeta.model_selection import EpisodicSplit, evaluate_episodes
    >>> X, y = load_digits(return_X_y=True)
    >>> cv = EpisodicSplit(n_way=5, k_shot=1, n_query=5, n_episodes=40, random_state=0)
    >>> result = evaluate_episodes(KNeighborsClassifier(n_neighbors=1), X, y, cv, n_jobs=2, backend="threading")
    >>> result.scores.shape, bool(0.5 < result.mean < 1.0)
    ((40,), True)
    """
    check_scalar(torch_threads, "torch_threads", numbers.Integral, min_val=1)
    if not (episodes_per_job == "auto" or isinstance(episodes_per_job, numbers.Integral)) or (
        episodes_per_job != "auto" and episodes_per_job < 1
    ):
        raise ValueError(f"episodes_per_job must be a positive integer or 'auto', got {episodes_per_job!r}")
    X, y = indexable(X, y)
    cv = check_cv(cv, y, classifier=is_classifier(learner))
    scorer = check_scoring(learner, scoring=scoring)
    splits = list(cv.split(X, y))
    if len(splits) < 2:
        raise ValueError(f"evaluate_episodes needs at least 2 episodes for an interval; cv gives {len(splits)}")
    payload = _evaluation_copy(learner)

    config = {} if backend is None else {"backend": backend}
    if backend == "dask":
        config["scatter"] = [payload, X, y]
    with joblib.parallel_config(**config):
        n_workers = joblib.effective_n_jobs(n_jobs)
        size = (
            max(1, math.ceil(len(splits) / (4 * n_workers))) if episodes_per_job == "auto" else int(episodes_per_job)
        )
        groups = [splits[i: i + size] for i in range(0, len(splits), size)]
        active_backend, _ = joblib.parallel.get_active_backend()
        # Results stream back as they come where the backend allows it (the
        # progress bar moves); others (e.g. Ray's) return them all at the end.
        streams = getattr(active_backend, "supports_return_generator", False)
        parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator" if streams else "list")
        jobs = parallel(
            joblib.delayed(_run_episodes)(payload, X, y, group, scorer, os.getpid(), torch_threads)
            for group in groups
        )
        results = []
        with _progress(len(splits), verbose) as bar:
            for group_results in jobs:
                results.extend(group_results)
                bar.update(len(group_results))

    # Imported here: model_selection imports this module.
    from .model_selection import mean_confidence_interval

    scores, fit_time, score_time = (np.array(column, dtype=np.float64) for column in zip(*results))
    mean, half_width = mean_confidence_interval(scores, confidence=confidence)
    return EpisodeScores(scores, mean, half_width, confidence, fit_time, score_time)


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass


def _progress(total, verbose):
    if not verbose:
        return _NoProgress()
    import tqdm

    return tqdm.tqdm(total=total, unit="episode", desc="episodes")
