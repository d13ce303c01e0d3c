"""skorch callbacks for meta-training."""

import math
import numbers
import time

import numpy as np
from sklearn.metrics import check_scoring
from skorch.callbacks import Callback

__all__ = ["TimeBudget", "BudgetSchedule", "EpisodeScoring"]


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

    def _now(self):
        return time.perf_counter()

    def on_train_begin(self, net, **kwargs):
        if not self.seconds > 0:
            raise ValueError(f"{type(self).__name__} needs a positive number of seconds, got {self.seconds!r}")
        self._start = self._now()
        self.elapsed_ = 0.0
        self.stopped_ = False

    def on_batch_end(self, net, training=None, **kwargs):
        self.elapsed_ = self._now() - self._start
        if training and self.elapsed_ >= self.seconds:
            self.stopped_ = True
            if net.verbose:
                self.sink(f"Stopping: the time budget of {self.seconds:g} s is spent.")
            raise KeyboardInterrupt

    def on_train_end(self, net, **kwargs):
        self.elapsed_ = self._now() - self._start


class BudgetSchedule(TimeBudget):
    """Warm up, then cosine-anneal the learning rate over a wall-clock budget,
    and stop when it is spent.

    The schedule of a run that is stopped by time rather than by a number
    of epochs: the learning rate follows the fraction of the budget spent,
    not the epoch count, so the same callback fits a slow second-order
    learner and a fast metric one, and annealing ends where training does.
    Before every training batch (a meta-batch of tasks in ``meta_fit``) the
    learning rate of every parameter group of every optimiser of the net
    is set to its initial value times

    - ``final_factor + (1 - final_factor) * f / warmup`` while the spent
      fraction ``f`` is below ``warmup`` (linear warm-up), then
    - ``final_factor + (1 - final_factor) * (1 + cos(pi * g)) / 2`` with
      ``g = (f - warmup) / (1 - warmup)`` (cosine annealing, Loshchilov and
      Hutter, 2017, without restarts).

    Stopping is :class:`TimeBudget`'s: after the first batch that ends past
    the budget. Use it instead of ``TimeBudget``, not beside it. The
    learning rate of each batch is recorded in the batch history as
    ``"lr"``.

    Parameters
    ----------
    seconds : float
        The budget, counted from the start of each ``meta_fit`` (or
        ``partial_meta_fit``) call; each call runs the whole schedule.

    warmup : float, default=0.05
        Fraction of the budget spent warming up, in [0, 1).

    final_factor : float, default=0.01
        The learning rate at the start of the warm-up and at the end of
        the budget, as a fraction of the initial one, in [0, 1].

    sink : callable, default=print
        Where the stopping message goes when the net is verbose.

    clock : callable or None, default=None
        Seconds as a float, e.g. ``time.process_time`` to budget CPU
        time; None is ``time.perf_counter`` (wall-clock time).

    Attributes
    ----------
    elapsed_ : float
        Seconds of training when the last call ended.

    stopped_ : bool
        Whether the budget stopped the last call.

    See Also
    --------
    TimeBudget : The stop without the schedule.

    References
    ----------
    Loshchilov, I., and Hutter, F. (2017). SGDR: Stochastic gradient
    descent with warm restarts. ICLR.

    Goyal, P., et al. (2017). Accurate, large minibatch SGD: training
    ImageNet in 1 hour. arXiv:1706.02677 (the linear warm-up).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skmeta import EpisodeSampler, ProtoNetClassifier
    >>> from skmeta.callbacks import BudgetSchedule
    >>> schedule = BudgetSchedule(1.0, warmup=0.1)
    >>> [round(schedule.lr_factor(f), 3) for f in (0.0, 0.05, 0.1, 0.55, 1.0)]
    [0.01, 0.505, 1.0, 0.505, 0.01]
    >>> X, y = load_digits(return_X_y=True)
    >>> tasks = EpisodeSampler(X / 16, y, n_way=5, k_shot=1, n_query=5, n_tasks=50, random_state=0)
    >>> learner = ProtoNetClassifier(max_epochs=10**6, callbacks=[("budget", schedule)],
    ...                              verbose=0, random_state=0).meta_fit(tasks)
    >>> schedule.stopped_, learner.history[-1, "batches", -1, "lr"] < 1e-4
    (True, True)
    """

    def __init__(self, seconds, warmup=0.05, final_factor=0.01, sink=print, clock=None):
        super().__init__(seconds, sink=sink)
        self.warmup = warmup
        self.final_factor = final_factor
        self.clock = clock

    def _now(self):
        return time.perf_counter() if self.clock is None else float(self.clock())

    def lr_factor(self, fraction):
        """The learning rate, relative to the initial one, once ``fraction``
        of the budget is spent (clipped to [0, 1]).

        Parameters
        ----------
        fraction : float
            Elapsed time over the budget.

        Returns
        -------
        float
        """
        fraction = min(max(float(fraction), 0.0), 1.0)
        low = self.final_factor
        if fraction < self.warmup:
            return low + (1 - low) * fraction / self.warmup
        progress = (fraction - self.warmup) / (1 - self.warmup)
        return low + (1 - low) * (1 + math.cos(math.pi * progress)) / 2

    def _check_schedule(self):
        for name, value, top_open in (("warmup", self.warmup, True), ("final_factor", self.final_factor, False)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
                0 <= value < 1 if top_open else 0 <= value <= 1
            ):
                interval = "[0, 1)" if top_open else "[0, 1]"
                raise ValueError(f"{type(self).__name__}'s {name} must be a number in {interval}, got {value!r}")

    def _param_groups(self, net):
        for name in net._optimizers:
            optimizer = getattr(net, name + "_", None)
            if optimizer is not None:
                yield from optimizer.param_groups

    def on_train_begin(self, net, **kwargs):
        self._check_schedule()
        super().on_train_begin(net, **kwargs)
        # The initial rates are kept in the groups (as torch's schedulers
        # keep them), so a later meta_fit call on the same optimiser starts
        # again from them, not from where the last schedule ended; a rate
        # that is not the one this schedule last set was set by the user
        # (``set_params(lr=...)``) and is the new initial rate.
        for group in self._param_groups(net):
            if "initial_lr" not in group or group.get("scheduled_lr") != group["lr"]:
                group["initial_lr"] = group["lr"]

    def on_batch_begin(self, net, training=False, **kwargs):
        if not training:
            return
        factor = self.lr_factor((self._now() - self._start) / self.seconds)
        lr = None
        for group in self._param_groups(net):
            group["lr"] = group["scheduled_lr"] = lr = group["initial_lr"] * factor
        if lr is not None:
            net.history.record_batch("lr", lr)


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
