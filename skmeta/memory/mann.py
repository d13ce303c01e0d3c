"""Memory-augmented neural networks (Santoro et al., 2016)."""

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_X_y
from sklearn.utils.multiclass import check_classification_targets

from .._prediction import PREDICT_BATCH_SIZE, check_finite, predict_in_chunks
from ..base import MetaClassifierMixin, MetaLearner
from ..utils._torch import as_tensor, full_precision, set_training
from ._memory import MANN

__all__ = ["MANNClassifier"]


class MANNClassifier(MetaClassifierMixin, MetaLearner):
    """Memory-augmented neural network: a recurrent learner that writes the
    support set into an external memory and classifies queries by recall.

    An LSTM controller sees a sequence of examples, each with the one-hot
    label of the *previous* example, so that to predict the label of an
    example it must have stored the earlier examples with their labels in
    its memory (written with least-recently-used access, read by cosine
    content lookup; see :class:`~skmeta.memory.MANN`). ``meta_fit`` trains
    the controller and the memory access on many episodes, each a sequence
    in random order with its labels randomly reassigned to output units, so
    that no binding of a class to a label can be kept in the weights.

    ``fit`` is learning without gradients: it runs the support set through
    the network, in a random order seeded by ``random_state``, and keeps the
    resulting memory and controller state. ``predict`` continues that state
    by one step for each query, independently: a query is read against the
    memory the support set left, and nothing it does is kept. Predictions
    therefore do not depend on the order of the queries or on which other
    queries are predicted with them, and ``fit`` does not depend on the
    order in which the support examples are given (they are put in a
    canonical order before the seeded shuffle). They do depend on
    ``random_state``, through the presentation order of the support set;
    see the user guide (docs/memory.md).

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MANN
        The network, :class:`~skmeta.memory.MANN`; its sizes go in as
        ``module__n_way`` (output units: the most classes a task may have,
        default 5), ``module__controller_size`` (200),
        ``module__memory_rows`` (128), ``module__memory_width`` (40),
        ``module__n_reads`` (read heads, 4) and ``module__usage_decay``
        (0.95), the values of Santoro et al. for Omniglot.

    optimizer, lr, max_epochs, batch_size, callbacks, warm_start, verbose, device
        Meta-training, as in :class:`skorch.NeuralNet`; ``batch_size`` is
        the number of episodes per meta-parameter update (16 in the paper).
        Recurrent networks profit from
        :class:`skorch.callbacks.GradientNormClipping`.

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, meta-training, and the order in which
        ``fit`` presents the support set.

    predict_batch_size : int, default=512
        Query rows scored at once by ``predict``, ``predict_proba`` and
        ``score``: any number of rows is predicted in chunks of this size,
        in memory bounded by it (each query continues the support state
        with its own copy of the memory). Predictions do not depend on it. Not to be confused with
        ``batch_size``, the number of tasks per meta-batch.

    **kwargs
        Routed parameters: ``module__*``, ``optimizer__*``, ``callbacks__*``.

    Attributes
    ----------
    module_ : MANN
        The meta-learned network (meta state).

    meta_n_features_in_ : int
        Features per example seen by ``meta_fit`` (meta state).

    history_ : skorch.History
        Meta-training history: ``train_loss`` (cross-entropy over every
        step of the support sequences and over the queries), ``train_acc``
        (query accuracy) and, with validation tasks, ``valid_loss``,
        ``valid_acc``.

    classes_ : ndarray of shape (n_classes,)
        Support classes of the task ``fit`` adapted to (task state); class
        ``classes_[i]`` is shown to the network as label ``i``.

    memory_state_ : MANNState
        Controller state, memory, usage and pending label after the
        support set (task state).

    support_order_ : ndarray of shape (n_support,)
        Indices of the support examples in the order ``fit`` presented them
        (task state).

    n_features_in_ : int
        Features seen by ``fit``.

    See Also
    --------
    skmeta.memory.MANN : The network, usable on its own as a sequence model.
    skmeta.ProtoNetClassifier : A metric-based learner for the same tasks.

    Notes
    -----
    Meta-training episodes are :class:`~skmeta.tasks.Task` objects: the
    support set is presented as a sequence (shuffled anew each time it is
    seen) and the loss covers the prediction at every step, as in the
    paper; each query is then scored as one more step from the end of the
    sequence, exactly as ``predict`` will. Santoro et al. trained on
    sequences of 5 classes with up to 10 instances each: use
    ``EpisodeSampler(..., n_way=5, k_shot=10, ...)``.

    References
    ----------
    Santoro, A., Bartunov, S., Botvinick, M., Wierstra, D. and Lillicrap, T.
    (2016). Meta-learning with memory-augmented neural networks. ICML.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import cross_val_score
    >>> from skmeta import MANNClassifier
    >>> from skmeta.model_selection import EpisodicSplit
    >>> from skmeta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> train, test = y < 6, y >= 6
    >>> tasks = EpisodeSampler(X[train], y[train], n_way=3, k_shot=4, n_query=2,
    ...                        n_tasks=32, random_state=0)
    >>> learner = MANNClassifier(module__controller_size=32, module__memory_rows=16,
    ...                          module__memory_width=8, module__n_reads=1, batch_size=8,
    ...                          max_epochs=2, verbose=0, random_state=0).meta_fit(tasks)
    >>> scores = cross_val_score(learner, X[test], y[test],
    ...                          cv=EpisodicSplit(n_way=3, k_shot=2, n_query=5, n_episodes=10, random_state=0))
    >>> scores.shape
    (10,)
    >>> learner.fit(X[test][:6], y[test][:6]).memory_state_.memory.shape
    torch.Size([1, 16, 8])

    Santoro et al.'s online protocol: one probability row per step, each
    computed before that step's label is shown.

    >>> learner.predict_proba_sequence(X[test][:8], y[test][:8]).shape
    (8, 4)
    """

    _task_attributes = MetaLearner._task_attributes + ("memory_state_", "support_order_")
    # random_state also seeds meta-training, but after it, it still sets the
    # order in which fit presents the support set: changing it is meaningful.
    _adaptation_params = ("random_state",)
    _neutral_params = MetaLearner._neutral_params + ("predict_batch_size",)

    def __init__(self, module=MANN, *args, predict_batch_size=PREDICT_BATCH_SIZE, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.predict_batch_size = predict_batch_size

    # ------------------------------------------------------------------
    # meta level
    # ------------------------------------------------------------------
    def meta_loss(self, tasks, training):
        groups = {}
        for task in tasks:
            self._check_n_way(task.n_way, "a meta-training task")
            key = (tuple(task.X_support.shape), tuple(task.X_query.shape), task.n_way)
            groups.setdefault(key, []).append(task)
        with torch.set_grad_enabled(training):
            # Tasks of one shape run as one batch of sequences: the step loop
            # is sequential, so its cost is per step, not per task.
            results = [self._episode_loss(group, training) for group in groups.values()]
        n_steps = sum(n for _, n, _, _ in results)
        loss = sum(loss * n for loss, n, _, _ in results) / n_steps
        correct = sum(c for _, _, c, _ in results)
        total = sum(t for _, _, _, t in results)
        return loss, correct / total

    def _episode_loss(self, tasks, training):
        """Mean cross-entropy over every support step and every query of a
        batch of same-shaped tasks, with the query accuracy."""
        net = self.module_
        X_support = torch.stack([task.X_support for task in tasks])
        y_support = torch.stack([task.y_support for task in tasks])
        X_query = torch.stack([task.X_query for task in tasks])
        y_query = torch.stack([task.y_query for task in tasks])
        n_tasks, n_support = y_support.shape
        n_query, n_way = y_query.shape[1], tasks[0].n_way
        device = X_support.device

        # A fresh random order and a fresh class -> output unit assignment
        # per episode (Santoro et al.): the weights cannot hold bindings.
        order = torch.rand(n_tasks, n_support).argsort(dim=1).to(device)
        X_support = X_support[torch.arange(n_tasks, device=device).unsqueeze(1), order]
        y_support = y_support.gather(1, order)
        units = torch.rand(n_tasks, net.n_way).argsort(dim=1)[:, :n_way].to(device)

        support_logits, state = net(X_support, units.gather(1, y_support))
        query_logits, _ = net.step(X_query.flatten(0, 1), state.repeat_interleave(n_query))
        query_logits = query_logits.view(n_tasks, n_query, -1)
        # Scores of the task's own classes, in class-code order.
        logits = full_precision(torch.cat([support_logits, query_logits], dim=1))
        logits = logits.gather(2, units.unsqueeze(1).expand(-1, logits.shape[1], -1))
        targets = torch.cat([y_support, y_query], dim=1)
        loss = self.get_loss(logits.reshape(-1, n_way), targets.reshape(-1), training=training)
        correct = (logits[:, n_support:].argmax(2) == y_query).sum()  # a tensor: no device read
        return loss, targets.numel(), correct, y_query.numel()

    # ------------------------------------------------------------------
    # task level
    # ------------------------------------------------------------------
    def _check_n_way(self, n_classes, what):
        n_way = self.module_.n_way
        if n_classes > n_way:
            raise ValueError(
                f"{what} has {n_classes} classes, but {type(self).__name__}'s network has "
                f"{n_way} output units (module__n_way={n_way}); set module__n_way to at least "
                f"{n_classes} and meta-fit again"
            )

    def _support_order(self, X, y):
        """Canonical order of the support set (rows sorted by value), then a
        seeded shuffle: the presentation order depends on the support set
        and random_state, not on the order the examples were given in."""
        values = X.reshape(len(X), -1).cpu().numpy()
        canonical = np.lexsort(np.vstack([y.cpu().numpy()[None], values.T[::-1]]))
        return torch.as_tensor(canonical)[torch.randperm(len(X))]

    def _adapt(self, X, y):
        self._check_n_way(len(self.classes_), "the support set")
        order = self._support_order(X, y).to(X.device)
        _, state = self.module_(X[order].unsqueeze(0), y[order].unsqueeze(0))
        self.memory_state_ = state.detach()
        self.support_order_ = order.cpu().numpy()

    def _predict_scores(self, X):
        n_classes = len(self.classes_)

        def scores(rows):
            logits, _ = self.module_.step(rows, self.memory_state_.repeat_interleave(len(rows)))
            logits = full_precision(logits[:, :n_classes])
            check_finite(logits, rows, self, "class scores")
            return logits

        return predict_in_chunks(scores, X, self.predict_batch_size)

    def predict_proba_sequence(self, X, y):
        """Online prediction along a labelled sequence, Santoro et al.'s protocol.

        Starting from an empty memory, the examples are shown in the order
        given; the probabilities for ``X[t]`` are computed from ``X[:t + 1]``
        and ``y[:t]``, before ``y[t]`` is revealed. The accuracy at the
        ``k``-th appearance of a class measures learning from ``k - 1``
        examples. Needs ``meta_fit``, not ``fit``; task state is untouched.

        Parameters
        ----------
        X : array-like of shape (n_steps, n_features) or (n_steps, ...)
        y : array-like of shape (n_steps,)
            At most ``module__n_way`` distinct labels.

        Returns
        -------
        proba : ndarray of shape (n_steps, n_classes)
            Columns in the order of ``np.unique(y)``.

        Examples
        --------
        >>> import numpy as np
        >>> from skmeta import EpisodeSampler, MANNClassifier
        >>> rng = np.random.RandomState(0)
        >>> X, y = rng.rand(60, 4), np.repeat(np.arange(6), 10)
        >>> learner = MANNClassifier(module__n_way=3, module__controller_size=8, module__memory_rows=8,
        ...                          module__memory_width=4, max_epochs=1, verbose=0, random_state=0)
        >>> learner = learner.meta_fit(EpisodeSampler(X, y, n_way=3, k_shot=2, n_query=1, n_tasks=4))
        >>> proba = learner.predict_proba_sequence(X[[0, 10, 1, 20]], ["a", "b", "a", "c"])
        >>> proba.shape   # columns "a", "b", "c"; the first row saw no label yet
        (4, 3)
        """
        if not self._is_meta_fitted():
            raise NotFittedError(
                f"This {type(self).__name__} instance is not meta-fitted yet. Call 'meta_fit' first."
            )
        X, y = check_X_y(X, y, allow_nd=True, dtype=np.float32)
        check_classification_targets(y)
        n_features = int(np.prod(X.shape[1:]))
        if n_features != self.meta_n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} was meta-fitted "
                f"with {self.meta_n_features_in_} features"
            )
        classes, codes = np.unique(y, return_inverse=True)
        self._check_n_way(len(classes), "the sequence")
        set_training(self, False)
        X = as_tensor(X, self.device, self._dtype).unsqueeze(0)
        codes = torch.as_tensor(codes, device=self.device).unsqueeze(0)
        with torch.no_grad(), self._autocast():
            logits, _ = self.module_(X, codes)
        proba = torch.softmax(full_precision(logits[0, :, : len(classes)]).double(), dim=1)
        return proba.cpu().numpy().astype(np.float64)
