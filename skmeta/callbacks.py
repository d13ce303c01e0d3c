"""skorch callbacks for meta-training."""

import time

import numpy as np
from sklearn.metrics import check_scoring
from skorch.callbacks import Callback

__all__ = ["TimeBudget", "EpisodeScoring"]


class TimeBudget(Callback):
    """Stop (meta-)training once a wall-clock budget is spent.

    Checked after every training batch (a meta-batch of tasks in
    ``meta_fit``), so training stops at most one batch past the budget,
    mid-epoch if need be; comparisons of methods under the same time budget
    stay fair however long their epochs are. Stops the way skorch's
    :class:`~skorch.callbacks.EarlyStopping` does, by raising
    ``KeyboardInterrupt``, which ``meta_fit`` (and skorch's ``fit``) catch;
    ``on_train_end`` callbacks still run. Works with any skorch net.

    Parameters
    ----------
    seconds : float
        The budget, counted from the start of each ``meta_fit`` (or
        ``partial_meta_fit``) call.

    sink : callable, default=print
        Where the stopping message goes when the net is verbose.

    Attributes
    ----------
    elapsed_ : float
        Seconds of training when the last call ended.

    stopped_ : bool
        Whether the budget stopped the last call.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skmeta import EpisodeSampler, ProtoNetClassifier
    >>> from skmeta.callbacks import TimeBudget
    >>> X, y = load_digits(return_X_y=True)
    >>> tasks = EpisodeSampler(X / 16, y, n_way=5, k_shot=1, n_query=5, n_tasks=50, random_state=0)
    >>> learner = ProtoNetClassifier(max_epochs=10**6, callbacks=[("budget", TimeBudget(1.0))],
    ...                              verbose=0, random_state=0).meta_fit(tasks)
    >>> budget = dict(learner.callbacks_)["budget"]
    >>> budget.stopped_, 1.0 <= budget.elapsed_ < 5.0
    (True, True)
    """

    def __init__(self, seconds, sink=print):
        self.seconds = seconds
        self.sink = sink

    def on_train_begin(self, net, **kwargs):
        if not self.seconds > 0:
            raise ValueError(f"TimeBudget needs a positive number of seconds, got {self.seconds!r}")
        self._start = time.perf_counter()
        self.elapsed_ = 0.0
        self.stopped_ = False

    def on_batch_end(self, net, training=None, **kwargs):
        self.elapsed_ = time.perf_counter() - self._start
        if training and self.elapsed_ >= self.seconds:
            self.stopped_ = True
            if net.verbose:
                self.sink(f"Stopping: the time budget of {self.seconds:g} s is spent.")
            raise KeyboardInterrupt

    def on_train_end(self, net, **kwargs):
        self.elapsed_ = time.perf_counter() - self._start


class EpisodeScoring(Callback):
    """Score meta-validation episodes with any scikit-learn scorer after each epoch.

    skorch's :class:`~skorch.callbacks.EpochScoring` scores ``(X, y)``
    examples, which a meta-learner does not train on; this callback does
    for episodes what it does for examples: after each epoch it adapts a
    clone of the learner to the support set of every validation task
    (``val_tasks`` of ``meta_fit``), scores the query set with
    ``scoring``, and records the mean in ``history`` under ``name``, with
    ``<name>_best`` marking the best epoch so far (as skorch's scoring
    callbacks do, so :class:`~skorch.callbacks.EarlyStopping` and
    :class:`~skorch.callbacks.Checkpoint` can monitor it). The
    meta-learned weights are not touched: adaptation runs on a clone.

    Parameters
    ----------
    scoring : str, callable or None, default=None
        A scikit-learn scorer name (``"accuracy"``, ``"neg_log_loss"``,
        ``"balanced_accuracy"``, ``"r2"``...) or ``scorer(estimator, X,
        y)``; None uses the learner's ``score``.

    lower_is_better : bool, default=False
        Whether a lower score is better (for ``<name>_best``).

    name : str or None, default=None
        History key; the scorer name prefixed with ``valid_``, or
        ``"valid_score"`` for None or a callable.

    Attributes
    ----------
    best_score_ : float
        The best score so far.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skmeta import EpisodeSampler, ProtoNetClassifier
    >>> from skmeta.callbacks import EpisodeScoring
    >>> X, y = load_digits(return_X_y=True)
    >>> train = EpisodeSampler(X[y < 6] / 16, y[y < 6], n_way=3, k_shot=1, n_query=5, n_tasks=20, random_state=0)
    >>> val = list(EpisodeSampler(X[y >= 6] / 16, y[y >= 6], n_way=3, k_shot=1, n_query=5, n_tasks=5,
    ...                           random_state=1))
    >>> learner = ProtoNetClassifier(max_epochs=2, callbacks=[EpisodeScoring("neg_log_loss")],
    ...                              verbose=0, random_state=0).meta_fit(train, val)
    >>> "valid_neg_log_loss" in learner.history[-1]
    True
    """

    def __init__(self, scoring=None, lower_is_better=False, name=None):
        self.scoring = scoring
        self.lower_is_better = lower_is_better
        self.name = name

    def _name(self):
        if self.name is not None:
            return self.name
        return f"valid_{self.scoring}" if isinstance(self.scoring, str) else "valid_score"

    def initialize(self):
        self.best_score_ = np.inf if self.lower_is_better else -np.inf
        return self

    def on_epoch_end(self, net, dataset_valid=None, **kwargs):
        tasks = getattr(dataset_valid, "tasks", None)
        if tasks is None:
            return
        scorer = check_scoring(net, scoring=self.scoring)
        scores = []
        try:
            for task in tasks:
                net.fit(task.X_support, _numpy(task.y_support))
                scores.append(scorer(net, task.X_query, _numpy(task.y_query)))
        finally:
            net._forget_task()
        score = float(np.mean(scores))
        best = score < self.best_score_ if self.lower_is_better else score > self.best_score_
        if best:
            self.best_score_ = score
        net.history.record(self._name(), score)
        net.history.record(self._name() + "_best", bool(best))


def _numpy(y):
    return y.cpu().numpy() if hasattr(y, "cpu") else np.asarray(y)
