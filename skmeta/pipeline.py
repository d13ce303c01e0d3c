"""Meta-fitting a whole scikit-learn pipeline: preprocessing learned once at
the meta level, frozen, in front of a meta-learner.

A scaler fitted on a 5-row support set estimates each feature's spread from
five numbers (from two, in a 2-way 1-shot task). :class:`MetaPipeline` fits
its preprocessing steps once, on the rows of the meta-training tasks, wraps
each in :class:`sklearn.frozen.FrozenEstimator`, and meta-fits its final
step on the transformed tasks; adaptation (``fit`` on a support set) then
transforms with the frozen steps and adapts only the learner.
"""

import numpy as np
import scipy.sparse
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline, make_pipeline

from .tasks import Task

__all__ = ["MetaPipeline", "make_meta_pipeline"]


def _as_array(X):
    return X.detach().cpu().numpy() if torch.is_tensor(X) else np.asarray(X)


def _check_task(task):
    if not isinstance(task, Task):
        raise TypeError(f"task collections must yield skmeta.tasks.Task, got {type(task).__name__}")
    return task


def _check_task_collection(tasks, what="tasks"):
    if isinstance(tasks, (str, bytes, Task)) or not hasattr(tasks, "__iter__"):
        raise TypeError(
            f"{what} must be an iterable of skmeta.tasks.Task (a list, an EpisodeSampler, ...), "
            f"got {type(tasks).__name__}"
        )


def _is_endless(tasks):
    """Whether ``tasks`` is a sampler without an end (``n_tasks=None``):
    skmeta's samplers then have no length."""
    if getattr(tasks, "n_tasks", 0) is None:
        return True
    if not hasattr(tasks, "__len__"):
        return False
    try:
        len(tasks)
    except TypeError:
        return True
    return False


class _TransformedTasks:
    """A task collection seen through the frozen preprocessing: each task's
    support and query rows are transformed when the task is drawn, so a
    sampler still yields fresh episodes every pass."""

    def __init__(self, tasks, transform):
        self.tasks = tasks
        self.transform = transform

    def __len__(self):
        return len(self.tasks)

    def __iter__(self):
        for task in self.tasks:
            _check_task(task)
            yield Task(
                self.transform(task.X_support),
                task.y_support,
                self.transform(task.X_query),
                task.y_query,
                classes=task.classes,
            )


class MetaPipeline(Pipeline):
    """A pipeline of transformers and a final meta-learner that can be meta-fitted.

    ``meta_fit(tasks)`` fits every transformer once on the rows of the
    meta-training tasks (support and query sets of one pass, or ``X_pool``),
    replaces it by a :class:`~sklearn.frozen.FrozenEstimator` of the fitted
    transformer, and meta-fits the final step on the transformed tasks.
    Afterwards the object is an ordinary :class:`~sklearn.pipeline.Pipeline`:
    ``fit(X_support, y_support)`` leaves the frozen transformers as they are
    (a frozen estimator's ``fit`` does nothing) and adapts the learner;
    ``predict`` transforms with the meta-level statistics. Clones keep both
    (a frozen estimator clones to itself, a meta-learner keeps its
    meta-parameters), so the pipeline works in
    ``cross_val_score(..., cv=EpisodicSplit(...))`` and ``GridSearchCV``.

    Transformers are fitted without labels: episode labels are codes local
    to each task and mean nothing across tasks. A step that is already a
    ``FrozenEstimator`` (a transformer fitted elsewhere) is used as it is.
    Transformers must output dense arrays (``OneHotEncoder(sparse_output=False)``,
    ``ColumnTransformer(sparse_threshold=0)``); to meet categories unseen in
    meta-training, use ``OneHotEncoder(handle_unknown="ignore")``.

    Parameters
    ----------
    steps : list of (str, estimator) tuples
        Transformers, then a meta-learner (an estimator with ``meta_fit``).

    memory, verbose, transform_input
        As in :class:`~sklearn.pipeline.Pipeline`.

    Attributes
    ----------
    meta_frozen_steps_ : tuple of str
        Names of the steps that ``meta_fit`` fitted and froze (meta state,
        kept by clones). A later ``meta_fit`` that restarts meta-training
        fits them again from their unfitted parameters.

    See Also
    --------
    make_meta_pipeline : Build one without naming the steps.
    sklearn.frozen.FrozenEstimator : How the fitted steps are kept from
        refitting.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import cross_val_score
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skmeta import ProtoNetClassifier
    >>> from skmeta.model_selection import EpisodicSplit
    >>> from skmeta.pipeline import make_meta_pipeline
    >>> from skmeta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> train, test = y < 6, y >= 6
    >>> tasks = EpisodeSampler(X[train], y[train], n_way=4, k_shot=1, n_query=5,
    ...                        n_tasks=50, random_state=0)
    >>> pipe = make_meta_pipeline(StandardScaler(),
    ...                           ProtoNetClassifier(max_epochs=2, verbose=0, random_state=0))
    >>> pipe = pipe.meta_fit(tasks, X_pool=X[train])
    >>> pipe.steps[0]
    ('standardscaler', FrozenEstimator(estimator=StandardScaler()))
    >>> cv = EpisodicSplit(n_way=4, k_shot=1, n_query=5, n_episodes=10, random_state=0)
    >>> cross_val_score(pipe, X[test], y[test], cv=cv).shape
    (10,)
    """

    def meta_fit(self, tasks, val_tasks=None, *, X_pool=None):
        """Fit the preprocessing at the meta level, then meta-fit the final step.

        Parameters
        ----------
        tasks : iterable of :class:`~skmeta.tasks.Task`
            Meta-training tasks, with the raw features the first step takes.

        val_tasks : iterable of Task, default=None
            Meta-validation tasks, transformed the same way.

        X_pool : array-like of shape (n_samples, n_features), default=None
            Rows to fit the preprocessing on, e.g. the meta-training pool.
            None takes the support and query rows of one pass over
            ``tasks`` (for a sampler: the rows in the proportions that
            meta-training sees them); an endless sampler
            (``n_tasks=None``) has no such pass and needs ``X_pool``. A
            DataFrame's column names are kept: task rows are given the
            same names before the fitted steps transform them.

        Returns
        -------
        self
        """
        learner = self._meta_learner()
        continues = getattr(learner, "warm_start", False) and getattr(learner, "_is_meta_fitted", lambda: False)()
        return self._meta_fit(tasks, val_tasks, X_pool, refit=not continues, epochs=None, partial=False)

    def partial_meta_fit(self, tasks, val_tasks=None, epochs=None, *, X_pool=None):
        """Continue meta-training the final step; the frozen preprocessing
        is kept (it is fitted first if the pipeline was never meta-fitted).

        Parameters
        ----------
        tasks, val_tasks, X_pool
            As in :meth:`meta_fit`.

        epochs : int, default=None
            Passes over ``tasks``; the learner's ``max_epochs`` by default.

        Returns
        -------
        self
        """
        refit = not hasattr(self, "meta_frozen_steps_")
        return self._meta_fit(tasks, val_tasks, X_pool, refit=refit, epochs=epochs, partial=True)

    def _meta_learner(self):
        self._validate_steps()
        learner = self._final_estimator
        if not hasattr(learner, "meta_fit"):
            raise TypeError(
                f"the last step of a MetaPipeline must be a meta-learner (with meta_fit), "
                f"got {type(learner).__name__}"
            )
        return learner

    def _meta_fit(self, tasks, val_tasks, X_pool, refit, epochs, partial):
        learner = self._meta_learner()
        _check_task_collection(tasks)
        if val_tasks is not None:
            _check_task_collection(val_tasks, "val_tasks")
        if refit and X_pool is None and _is_endless(tasks):
            raise ValueError(
                f"{type(tasks).__name__} is endless (n_tasks=None): MetaPipeline fits its preprocessing "
                "on one pass over the tasks, which never ends. Pass X_pool= (e.g. the sampler's pool of "
                "examples) or give the sampler n_tasks."
            )
        if iter(tasks) is tasks:  # a one-shot iterator: the pool pass would consume it
            tasks = list(tasks)
        if refit:
            self._fit_preprocessing(tasks if X_pool is None else None, X_pool)
        train = _TransformedTasks(tasks, self._preprocess)
        val = None if val_tasks is None else list(_TransformedTasks(val_tasks, self._preprocess))
        if partial:
            learner.partial_meta_fit(train, val, epochs=epochs)
        else:
            learner.meta_fit(train, val)
        return self

    def _fit_preprocessing(self, tasks, X_pool):
        refit = set(getattr(self, "meta_frozen_steps_", ()))
        if X_pool is None:
            rows = [_as_array(X) for task in map(_check_task, tasks) for X in (task.X_support, task.X_query)]
            if not rows:
                raise ValueError("the task collection is empty")
            X_pool = np.concatenate(rows)
        X = X_pool
        self.steps = list(self.steps)
        frozen = []
        for index, name, transformer in self._iter(with_final=False):
            if isinstance(transformer, FrozenEstimator) and name not in refit:
                X = transformer.transform(X)
                continue
            unfitted = transformer.estimator if isinstance(transformer, FrozenEstimator) else transformer
            # Unsupervised: episode labels are per-task codes, not classes.
            fitted = clone(unfitted).fit(X)
            self.steps[index] = (name, FrozenEstimator(fitted))
            frozen.append(name)
            X = fitted.transform(X)
        self.meta_frozen_steps_ = tuple(frozen)

    def _preprocess(self, X):
        was_tensor = torch.is_tensor(X)
        X = self._with_fitted_names(_as_array(X))
        for _, name, transformer in self._iter(with_final=False):
            X = transformer.transform(X)
            if scipy.sparse.issparse(X):
                raise TypeError(
                    f"step {name!r} returns a sparse matrix; meta-learners take dense input "
                    "(OneHotEncoder(sparse_output=False), ColumnTransformer(sparse_threshold=0))"
                )
        X = np.asarray(X, dtype=np.float32)
        return torch.from_numpy(X) if was_tensor else X

    def _with_fitted_names(self, X):
        """Task rows under the column names the first step was fitted with
        (a DataFrame ``X_pool``): transforming unnamed rows with a step
        fitted on named ones warns on every task, and a ColumnTransformer
        selecting columns by name cannot transform them at all."""
        first = next(iter(self._iter(with_final=False)), None)
        names = None if first is None else getattr(first[2], "feature_names_in_", None)
        if names is None or hasattr(X, "columns") or X.ndim != 2 or X.shape[1] != len(names):
            return X
        import pandas as pd  # fitted on a DataFrame, so pandas is there

        return pd.DataFrame(X, columns=names)

    def __sklearn_clone__(self):
        params = self.get_params(deep=False)
        twin = type(self)(**{name: clone(value, safe=False) for name, value in params.items()})
        if hasattr(self, "meta_frozen_steps_"):
            twin.meta_frozen_steps_ = self.meta_frozen_steps_
        return twin


def make_meta_pipeline(*steps, memory=None, verbose=False):
    """Build a :class:`MetaPipeline` from transformers and a meta-learner,
    naming the steps as :func:`sklearn.pipeline.make_pipeline` does.

    Parameters
    ----------
    *steps : estimators
        Transformers, then a meta-learner.

    memory, verbose
        As in :func:`sklearn.pipeline.make_pipeline`.

    Returns
    -------
    pipeline : MetaPipeline

    Examples
    --------
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skmeta import ProtoNetClassifier
    >>> from skmeta.pipeline import make_meta_pipeline
    >>> make_meta_pipeline(StandardScaler(), ProtoNetClassifier()).steps[0]
    ('standardscaler', StandardScaler())
    """
    # make_pipeline names the steps; the MetaPipeline takes them as they are.
    return MetaPipeline(make_pipeline(*steps).steps, memory=memory, verbose=verbose)
