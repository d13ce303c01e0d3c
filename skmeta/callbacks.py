"""skorch callbacks for meta-training."""

import time

from skorch.callbacks import Callback

__all__ = ["TimeBudget"]


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
