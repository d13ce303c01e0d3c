"""Learned hyper-parameters: a portfolio of configurations meta-learned across
datasets, cross-validated on a new dataset like a small grid search."""

import copy
import numbers
import warnings

import numpy as np
from joblib import Parallel, delayed
from scipy.stats import entropy
from sklearn.base import clone, is_classifier
from sklearn.metrics import get_scorer_names
from sklearn.model_selection import ParameterGrid, ParameterSampler, check_cv, cross_validate
# BaseSearchCV with its _run_search hook is scikit-learn's extension point
# for searches (GridSearchCV and RandomizedSearchCV are written on it); it is
# not exported from sklearn.model_selection.
from sklearn.model_selection._search import BaseSearchCV
from sklearn.utils import get_tags, indexable
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_memory

from .base import NotMetaFittedWarning

__all__ = ["MetaSearchCV"]

def meta_features(X, y):
    """Simple, always computable descriptors of a dataset (Feurer et al.'s
    "simple" group): size, width, number of classes, class balance.

    Works on any X with a shape (nominal columns included) since a pipeline
    may encode them later; a continuous or absent y counts as zero classes.
    """
    # log1p for the classes: a regression target has none.
    n_samples = X.shape[0] if hasattr(X, "shape") else len(X)
    n_features = np.shape(X)[1] if len(np.shape(X)) > 1 else 1
    if y is not None and type_of_target(y) in ("binary", "multiclass"):
        _, counts = np.unique(np.asarray(y), return_counts=True)
        frequencies = counts / counts.sum()
        n_classes = len(counts)
        balance = entropy(frequencies) / np.log(n_classes) if n_classes > 1 else 1.0
        minority = frequencies.min()
    else:
        n_classes, balance, minority = 0, 0.0, 0.0
    return np.array([np.log(n_samples), np.log(n_features), np.log1p(n_classes), balance, minority])


def greedy_portfolio(scores, n_candidates):
    """Indices of ``n_candidates`` columns of ``scores`` chosen greedily to
    minimise the average regret over its rows, and that regret after each pick.

    ``scores[d, c]`` is the score (higher is better) of configuration ``c`` on
    dataset ``d``; the regret of a portfolio on ``d`` is the best score of the
    whole pool minus the best score in the portfolio. Ties go to the
    configuration with the higher mean score, so a portfolio that already has
    zero regret keeps adding the configurations that are good on average.
    """
    best = scores.max(axis=1)
    covered = np.full(len(scores), -np.inf)
    mean_score = scores.mean(axis=0)
    chosen, regret = [], []
    for _ in range(min(n_candidates, scores.shape[1])):
        regrets = (best[:, None] - np.maximum(covered[:, None], scores)).mean(axis=0)
        regrets[chosen] = np.inf
        pick = int(np.lexsort((-mean_score, regrets))[0])
        chosen.append(pick)
        regret.append(regrets[pick])
        covered = np.maximum(covered, scores[:, pick])
    return np.array(chosen, dtype=int), np.array(regret)


def posterior_scores(fold_scores, prior_scores):
    """Each candidate's expected score on a new dataset, given its
    cross-validation there and its scores on the meta-training datasets.

    A normal model of every candidate's score relative to the mean of the
    candidates (so that how hard a dataset is cancels): the meta-training
    datasets give a prior, mean ``mu_c`` and variance ``tau2`` (pooled over
    candidates) of that relative score on a new dataset; the new dataset's
    folds give a noisy measurement of it, the mean of its folds with the
    variance of a fold around that mean (pooled over candidates) divided by
    the number of folds. The posterior mean shrinks the cross-validated
    relative score towards the prior by ``tau2 / (tau2 + noise)``: all the way
    when the folds disagree more than the datasets do (a few rows), hardly at
    all when they agree (many rows). Candidates with a failed fold (NaN)
    score -inf.

    Parameters
    ----------
    fold_scores : ndarray of shape (n_folds, n_candidates)
        Scores of the candidates on each fold of the new dataset.

    prior_scores : ndarray of shape (n_datasets, n_candidates)
        Their mean scores on the meta-training datasets.

    Returns
    -------
    scores : ndarray of shape (n_candidates,)
        The posterior means, on the scale of the scores (the relative score
        plus the mean of the cross-validated scores).
    weight : float
        The weight given to the new dataset's cross-validation, in [0, 1].
    """
    fold_scores = np.asarray(fold_scores, dtype=float)
    prior_scores = np.asarray(prior_scores, dtype=float)
    failed = np.isnan(fold_scores).any(axis=0)
    n_ok = int((~failed).sum())
    scores = np.full(fold_scores.shape[1], -np.inf)
    if n_ok == 0:
        return scores, 1.0
    folds, prior = fold_scores[:, ~failed], prior_scores[:, ~failed]
    n_folds, n_datasets = len(folds), len(prior)
    relative = folds - folds.mean(axis=1, keepdims=True)
    measured = relative.mean(axis=0)
    past = prior - prior.mean(axis=1, keepdims=True)
    mu = past.mean(axis=0)
    # Residual degrees of freedom: one mean per candidate and one per row are fitted.
    dof_prior = (n_datasets - 1) * (n_ok - 1)
    dof_folds = (n_folds - 1) * (n_ok - 1)
    if dof_prior == 0 or dof_folds == 0:
        weight = 1.0  # no spread to compare: trust the new dataset, as a grid search would
    else:
        tau2 = float(((past - mu) ** 2).sum()) / dof_prior
        noise = float(((relative - measured) ** 2).sum()) / dof_folds / n_folds
        # A spread at the level of rounding errors is no spread.
        tiny = (1e-10 * max(np.abs(folds).max(), np.abs(prior).max())) ** 2
        tau2, noise = (0.0 if v <= tiny else v for v in (tau2, noise))
        weight = 1.0 if tau2 + noise == 0 else tau2 / (tau2 + noise)
    scores[~failed] = folds.mean() + mu + weight * (measured - mu)
    return scores, weight


def _as_datasets(datasets):
    """``[(name, X, y)]`` from a dict or sequence of (X, y) pairs (or Bunches)
    or a :class:`~skmeta.tasks.DatasetCollection`."""
    from .tasks import DatasetCollection

    if isinstance(datasets, DatasetCollection):
        return datasets.datasets()
    if isinstance(datasets, dict):
        pairs = list(datasets.items())
    elif isinstance(datasets, (list, tuple)):
        pairs = [(str(i), d) for i, d in enumerate(datasets)]
    else:
        raise TypeError(
            "datasets must be a dict of name to (X, y), a list of (X, y) pairs or a "
            f"DatasetCollection, got {type(datasets).__name__}"
        )
    if not pairs:
        raise ValueError("meta_fit needs at least one dataset; got none")
    items = []
    for name, dataset in pairs:
        if hasattr(dataset, "data") and hasattr(dataset, "target"):
            X, y = dataset.data, dataset.target
        elif isinstance(dataset, (tuple, list)) and len(dataset) == 2:
            X, y = dataset
        else:
            raise TypeError(f"dataset {name!r} must be an (X, y) pair, got {type(dataset).__name__}")
        X, y = indexable(X, y)
        if len(y) == 0:
            raise ValueError(f"dataset {name!r} is empty")
        items.append((str(name), X, np.asarray(y)))
    return items


class MetaSearchCV(BaseSearchCV):
    """Hyper-parameter search that learns from earlier datasets what to try first.

    ``meta_fit`` cross-validates a pool of configurations of `estimator` on
    many datasets and keeps a portfolio of `n_candidates` of them, chosen
    greedily to minimise the average regret across those datasets, as in
    auto-sklearn 2.0 [1]_. ``fit`` then cross-validates only the portfolio on
    a new dataset, refits the best, and is an ordinary fitted search:
    ``best_params_``, ``best_estimator_``, ``cv_results_``, ``predict``,
    ``score``, as in :class:`~sklearn.model_selection.GridSearchCV`.

    With `n_neighbors`, the portfolio is chosen per new dataset, from the
    meta-training datasets nearest to it in meta-feature space (log of the
    numbers of rows, features and classes, class entropy, minority class
    fraction, standardised), the idea of Feurer et al. (2015) [2]_.

    Parameters
    ----------
    estimator : estimator object
        Any scikit-learn estimator or pipeline; cloned for every evaluation.

    param_distributions : dict or list of dicts
        The search space, as for
        :class:`~sklearn.model_selection.RandomizedSearchCV`: lists of values
        or distributions with an ``rvs`` method, keyed by parameter name.

    n_candidates : int, default=8
        Configurations ``fit`` cross-validates on a new dataset: the size of
        the portfolio (at most the pool's size).

    n_pool : int or None, default=None
        Configurations evaluated by ``meta_fit``: None for every point of the
        grid (lists only), an int for that many draws of
        :class:`~sklearn.model_selection.ParameterSampler` (the whole grid
        when it is smaller).

    n_neighbors : int or None, default=None
        If set, ``fit`` builds the portfolio from the ``n_neighbors``
        meta-training datasets nearest to the new one in meta-feature space,
        instead of from all of them.

    selection : {"posterior", "cv"}, default="posterior"
        How ``fit`` picks the best candidate. "cv": the best mean
        cross-validated score, as a grid search does. "posterior": the best
        expected score given both that cross-validation and the candidates'
        scores on the meta-training datasets (see Notes): on a small dataset,
        whose folds disagree, experience outweighs the noisy
        cross-validation. A search that was never meta-fitted uses "cv".

    scoring : str, callable or None, default=None
        One metric (regret needs a single score), as for
        :func:`~sklearn.model_selection.cross_val_score`; None is the
        estimator's ``score``.

    cv : int, cross-validation generator or iterable, default=5
        Splits for every evaluation in ``fit``, and in ``meta_fit`` unless
        `meta_cv` is set.

    meta_cv : int, cross-validation generator or None, default=None
        Splits for ``meta_fit``'s evaluations; None uses `cv`. Experience
        transfers best when it is gathered in the regime of the datasets
        ``fit`` will see: when those are small, meta-fit on whole datasets
        with splits that train on that many rows and test on the rest (for
        example :class:`~sklearn.model_selection.StratifiedShuffleSplit`
        with ``train_size=100``), so that the meta-scores measure how each
        configuration generalises from a small training set.

    n_jobs : int or None, default=None
        Parallel evaluations (joblib; any backend through
        ``joblib.parallel_backend``), in ``meta_fit`` and in ``fit``.

    memory : str, joblib.Memory or None, default=None
        Caches ``meta_fit``'s evaluations (one per configuration and dataset),
        so that meta-fitting again on overlapping datasets evaluates only what
        is new.

    refit : bool, default=True
        Refit the best candidate on the whole new dataset.

    random_state : int, RandomState instance or None, default=None
        Draws of the pool (``n_pool``), and of the candidates of a search that
        was never meta-fitted.

    verbose : int, default=0
        Verbosity of the search in ``fit``.

    error_score : 'raise' or float, default=np.nan
        Score of a failed fit; NaN scores count as the dataset's worst in the
        regret.

    Attributes
    ----------
    meta_pool_ : list of dict
        The configurations ``meta_fit`` evaluated.

    meta_scores_ : ndarray of shape (n_datasets, n_pool)
        Their mean cross-validated score on each meta-training dataset.

    meta_dataset_names_ : list of str
        The meta-training datasets, in the rows' order.

    meta_features_ : ndarray of shape (n_datasets, 5)
        Their meta-features.

    portfolio_ : list of dict
        The `n_candidates` configurations ``fit`` tries (without
        `n_neighbors`), in the greedy order.

    meta_regret_ : ndarray of shape (n_candidates,)
        Average regret on the meta-training datasets after each candidate of
        the portfolio; never increases.

    best_estimator_, best_params_, best_score_, best_index_, cv_results_, \
scorer_, n_splits_, refit_time_, multimetric_ :
        As in :class:`~sklearn.model_selection.GridSearchCV`, for the last
        ``fit``.

    See Also
    --------
    sklearn.model_selection.GridSearchCV : Every configuration of a grid.
    sklearn.model_selection.RandomizedSearchCV : Random configurations; what
        this search does when it was never meta-fitted.

    Notes
    -----
    A clone keeps what ``meta_fit`` learned (the ``meta_*`` attributes and
    ``portfolio_``) and forgets the last ``fit``, so ``cross_val_score`` and
    nested searches evaluate the meta-learned portfolio. `n_candidates`,
    `n_neighbors`, `selection` and `cv` are read by ``fit`` and may be
    changed after ``meta_fit``.

    With ``selection="posterior"``, each candidate's score relative to the
    mean of the candidates has a prior from the meta-training datasets (its
    mean there, and their spread) and a measurement from the new dataset's
    folds (their mean, and the spread of the folds divided by their number);
    the candidate with the highest posterior mean wins. ``cv_results_``
    holds those means as ``posterior_test_score`` and the weight given to
    the new dataset's cross-validation as ``posterior_weight``;
    ``best_score_`` stays the winner's mean cross-validated score.
    A search that was never meta-fitted tries `n_candidates` random
    configurations and warns.

    References
    ----------
    .. [1] Feurer, M., Eggensperger, K., Falkner, S., Lindauer, M. and
       Hutter, F. (2022). Auto-Sklearn 2.0: Hands-free AutoML via
       Meta-Learning. Journal of Machine Learning Research, 23(261), 1-61.
    .. [2] Feurer, M., Springenberg, J. T. and Hutter, F. (2015).
       Initializing Bayesian Hyperparameter Optimization via Meta-Learning.
       AAAI Conference on Artificial Intelligence.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer, load_iris, load_wine
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> from skmeta.model_selection import MetaSearchCV
    >>> search = MetaSearchCV(DecisionTreeClassifier(random_state=0),
    ...                       {"max_depth": [1, 2, 4, None], "min_samples_leaf": [1, 10]},
    ...                       n_candidates=2, cv=3)
    >>> search = search.meta_fit({"iris": load_iris(return_X_y=True),
    ...                           "wine": load_wine(return_X_y=True)})
    >>> search.portfolio_
    [{'max_depth': 4, 'min_samples_leaf': 1}, {'max_depth': None, 'min_samples_leaf': 1}]
    >>> search.meta_regret_  # the first candidate is already the best on both
    array([0., 0.])
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> search.fit(X, y).best_params_
    {'max_depth': 4, 'min_samples_leaf': 1}
    >>> len(search.cv_results_["params"])
    2
    """

    _parameter_constraints: dict = {
        **{
            name: constraint
            for name, constraint in BaseSearchCV._parameter_constraints.items()
            if name not in ("pre_dispatch", "return_train_score")
        },
        "param_distributions": [dict, list],
        "n_candidates": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_pool": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "n_neighbors": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "selection": [StrOptions({"posterior", "cv"})],
        "meta_cv": ["cv_object", None],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "refit": ["boolean"],
        "memory": [None, str, HasMethods(["cache"])],
        "random_state": ["random_state"],
    }
    # BaseSearchCV reads these; here they are fixed rather than parameters.
    pre_dispatch = "2*n_jobs"
    return_train_score = False

    def __init__(
        self,
        estimator,
        param_distributions,
        *,
        n_candidates=8,
        n_pool=None,
        n_neighbors=None,
        selection="posterior",
        scoring=None,
        cv=5,
        meta_cv=None,
        n_jobs=None,
        memory=None,
        refit=True,
        random_state=None,
        verbose=0,
        error_score=np.nan,
    ):
        self.estimator = estimator
        self.param_distributions = param_distributions
        self.n_candidates = n_candidates
        self.n_pool = n_pool
        self.n_neighbors = n_neighbors
        self.selection = selection
        self.scoring = scoring
        self.cv = cv
        self.meta_cv = meta_cv
        self.n_jobs = n_jobs
        self.memory = memory
        self.refit = refit
        self.random_state = random_state
        self.verbose = verbose
        self.error_score = error_score

    # ------------------------------------------------------------------
    # meta level
    # ------------------------------------------------------------------
    def _grid_only(self):
        grids = self.param_distributions if isinstance(self.param_distributions, list) else [self.param_distributions]
        return all(not hasattr(values, "rvs") for grid in grids for values in grid.values())

    def _draw(self, n):
        """``n`` configurations: ParameterSampler's draws, or the whole grid
        when it has no more than ``n`` points."""
        if self._grid_only() and len(ParameterGrid(self.param_distributions)) <= n:
            return list(ParameterGrid(self.param_distributions))
        return list(ParameterSampler(self.param_distributions, n, random_state=self.random_state))

    def _pool(self):
        """The configurations to evaluate, each checked against the estimator."""
        if self.n_pool is not None:
            pool = self._draw(self.n_pool)
        elif self._grid_only():
            pool = list(ParameterGrid(self.param_distributions))
        else:
            raise ValueError(
                "n_pool=None evaluates the whole grid, but param_distributions holds a "
                "distribution; set n_pool to the number of configurations to draw"
            )
        if not pool:
            raise ValueError("param_distributions gives an empty pool of configurations")
        for params in pool:
            clone(self.estimator).set_params(**params)  # raises naming an unknown parameter
        return pool

    def meta_fit(self, datasets):
        """Evaluate the pool on every dataset and learn the portfolio.

        Parameters
        ----------
        datasets : dict, list or DatasetCollection
            Meta-training datasets: a dict of name to ``(X, y)`` (or a Bunch
            with ``data`` and ``target``), a list of ``(X, y)`` pairs, or a
            :class:`~skmeta.tasks.DatasetCollection`.

        Returns
        -------
        self : MetaSearchCV
            Meta-fitted, not fitted: call ``fit`` on a new dataset.
        """
        self._validate_params()
        items = _as_datasets(datasets)
        pool = self._pool()
        # One job per configuration and dataset, cached one by one. The job is
        # scikit-learn's own function, so that joblib's worker processes need
        # not import this package (and torch) to run it.
        evaluate = check_memory(self.memory).cache(cross_validate)
        classifier = is_classifier(self.estimator)
        jobs = []
        for _, X, y in items:
            cv = check_cv(self.cv if self.meta_cv is None else self.meta_cv, y, classifier=classifier)
            jobs.extend(
                delayed(evaluate)(
                    clone(self.estimator).set_params(**params), X, y,
                    cv=cv, scoring=self.scoring, error_score=self.error_score,
                )
                for params in pool
            )
        results = Parallel(n_jobs=self.n_jobs)(jobs)
        scores = np.array([np.mean(result["test_score"]) for result in results]).reshape(len(items), len(pool))
        failed = np.isnan(scores).all(axis=1)
        if failed.any():
            raise ValueError(
                f"every configuration failed on dataset {items[np.flatnonzero(failed)[0]][0]!r}; "
                "set error_score='raise' to see why"
            )
        # A failed configuration is as bad as the worst one on that dataset.
        worst = np.nanmin(scores, axis=1, keepdims=True)
        scores = np.where(np.isnan(scores), worst, scores)

        self.meta_pool_ = pool
        self.meta_scores_ = scores
        self.meta_dataset_names_ = [name for name, _, _ in items]
        self.meta_features_ = np.array([meta_features(X, y) for _, X, y in items])
        chosen, self.meta_regret_ = greedy_portfolio(scores, self.n_candidates)
        self.portfolio_ = [pool[i] for i in chosen]
        for name in self._task_attributes():
            delattr(self, name)
        return self

    def _is_meta_fitted(self):
        return hasattr(self, "meta_scores_")

    def _nearest(self, X, y):
        """Rows of the ``n_neighbors`` meta-training datasets nearest to (X, y)."""
        features = self.meta_features_
        scale = features.std(axis=0)
        scale[scale == 0] = 1.0
        distance = np.linalg.norm((features - meta_features(X, y)) / scale, axis=1)
        return np.argsort(distance, kind="stable")[: self.n_neighbors]

    # ------------------------------------------------------------------
    # task level
    # ------------------------------------------------------------------
    def fit(self, X, y=None, **params):
        """Cross-validate the portfolio on (X, y) and refit the best.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The new dataset.

        y : array-like of shape (n_samples,), default=None
            Its targets.

        **params : dict
            Passed to the estimator's ``fit``, the scorer and the splitter,
            as in :meth:`sklearn.model_selection.GridSearchCV.fit`.

        Returns
        -------
        self : MetaSearchCV
            Fitted.
        """
        self._prior = None
        if self._is_meta_fitted():
            rows = slice(None) if self.n_neighbors is None else self._nearest(X, y)
            chosen, _ = greedy_portfolio(self.meta_scores_[rows], self.n_candidates)
            self._candidates = [self.meta_pool_[i] for i in chosen]
            if self.selection == "posterior":
                self._prior = self.meta_scores_[rows][:, chosen]
        else:
            warnings.warn(
                "MetaSearchCV was never meta-fitted: fit tries n_candidates random configurations",
                NotMetaFittedWarning,
                stacklevel=2,
            )
            self._candidates = self._draw(self.n_candidates)
        try:
            return super().fit(X, y, **params)
        finally:
            del self._candidates, self._prior

    def _run_search(self, evaluate_candidates):
        evaluate_candidates(self._candidates)

    def _select_best_index(self, refit, refit_metric, results):
        # BaseSearchCV's hook for the winner (a static method there, called
        # on the instance): the best posterior mean when there is a prior.
        if self._prior is None:
            return BaseSearchCV._select_best_index(refit, refit_metric, results)
        n_splits = sum(1 for key in results if key.startswith("split") and key.endswith(f"_test_{refit_metric}"))
        folds = np.array([results[f"split{i}_test_{refit_metric}"] for i in range(n_splits)])
        scores, weight = posterior_scores(folds, self._prior)
        results["posterior_test_score"] = scores
        results["posterior_weight"] = np.full(len(scores), weight)
        return int(np.argmax(scores))

    def _task_attributes(self):
        meta = {"portfolio_"}
        return [name for name in vars(self) if name.endswith("_") and not name.startswith("meta_") and name not in meta]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # The candidates see the data as it is: NaN is fine when the estimator takes it.
        tags.input_tags.allow_nan = get_tags(self.estimator).input_tags.allow_nan
        return tags

    def __sklearn_is_fitted__(self):
        # Fitted means searched on a dataset; meta-fitted alone is not.
        return hasattr(self, "cv_results_")

    def __sklearn_clone__(self):
        twin = type(self)(**{name: clone(value, safe=False) for name, value in self.get_params(deep=False).items()})
        for name, value in vars(self).items():
            if name.startswith("meta_") or name == "portfolio_":
                setattr(twin, name, copy.deepcopy(value))
        return twin
