"""Pre-train baselines: a backbone trained by ordinary classification over
all meta-training classes, then a simple classifier on its features
(Chen et al., 2019; Wang et al., 2019)."""

import numbers

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.utils import check_scalar
from skorch.dataset import Dataset
from torch import nn

from ..tasks._intake import TaskDataset, check_task
from ..utils._torch import as_tensor, full_precision, set_training
from ..modules import MLP, infer_n_features_out
from ..tasks import EpisodeSampler
from ._base import MetricMetaLearner, class_means, normalize_rows, power_of_two_scale

__all__ = ["PretrainedClassifier"]

_CLASSIFIERS = ("centroid", "logistic")
_NORMALIZE = ("cl2n", "l2n", None)


class _PretrainHead(nn.Module):
    """The pre-training classification layer and the mean feature of the
    meta-training examples (SimpleShot's centring vector)."""

    def __init__(self, n_features, n_classes=None):
        super().__init__()
        # Before meta_fit there are no meta-training classes, hence no layer.
        self.linear = None if n_classes is None else nn.Linear(n_features, n_classes)
        self.register_buffer("feature_mean", torch.zeros(n_features))

    def forward(self, z):
        return self.linear(z)


class PretrainedClassifier(MetricMetaLearner):
    """Pre-train baselines: ordinary classification over all meta-training
    classes, then nearest centroid or logistic regression on the features.

    ``meta_fit`` pools the examples of the meta-training tasks under their
    classes and trains the backbone with a linear softmax layer over all of
    those classes at once, in skorch's ordinary mini-batch loop: no
    episodes. The layer is then dropped; ``fit`` adapts to a support set of
    new classes with a simple classifier on the backbone's features, which
    ``transform`` returns:

    - ``classifier="centroid"`` with ``normalize="cl2n"`` is SimpleShot
      (Wang et al., 2019): features centred on the mean feature of the
      meta-training examples, L2-normalised, then the nearest class mean
      (:class:`~sklearn.neighbors.NearestCentroid`, Euclidean).
    - ``classifier="logistic"`` is the "Baseline" of Chen et al. (2019): a
      new linear softmax classifier trained on the support features, here
      :class:`~sklearn.linear_model.LogisticRegression`.

    Both papers show that these baselines match or beat many meta-learners:
    the bar every meta-learner must clear. ``classifier``, ``normalize``,
    and ``C`` are read at adaptation time, so one pre-trained
    backbone serves every variant (``set_params`` or a grid search after
    ``meta_fit``, no retraining).

    **Which examples are pooled.** For an
    :class:`~skmeta.tasks.EpisodeSampler`, its whole pool, with each class
    of the sampler (rotations made by ``augment`` included) a class of its
    own. For any other collection of tasks, every support and query
    example of every task, labelled by its global class: ``task.classes[y]``
    when the task has ``classes`` (sampled episodes, where ``y`` is the
    episode label ``0 .. n_way - 1``), else the task's labels themselves.
    Examples are counted as often as they occur in the tasks. As
    ``task.classes`` gives a rotated class the label of the class it was
    made from, pass the sampler itself, not a list of its episodes, to keep
    rotations apart.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The backbone; :class:`~skmeta.modules.Conv4` for images. Arguments
        go in as ``module__<name>``.

    classifier : {"centroid", "logistic"}, default="centroid"
        The classifier ``fit`` trains on the support features. With a
        single support class, the centroid rule (which predicts it) is used
        either way.

    normalize : {"cl2n", "l2n", None}, default="cl2n"
        Feature transformation of SimpleShot, applied by ``transform`` and
        before either classifier: "cl2n" subtracts the mean feature of the
        meta-training examples then scales to unit length, "l2n" only
        scales, None leaves the features as they are.

    C : float, default=10.0
        Inverse regularisation strength of the logistic regression. On
        unit-length Omniglot features, 10 was as accurate as or slightly
        more accurate than scikit-learn's default of 1 and than 100
        (5-way 1-shot and 5-shot).

    criterion, optimizer, lr, max_epochs, callbacks, warm_start, verbose, device
        Pre-training, as in :class:`skorch.NeuralNet`: ``max_epochs``
        passes over the pooled examples.

    batch_size : int, default=64
        Examples per mini-batch in pre-training (and tasks per batch in
        meta-validation).

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation and the order of the mini-batches.

    predict_batch_size : int, default=512
        Query rows scored at once by ``predict``, ``predict_proba``,
        ``score`` (and ``transform`` where there is one): any number of
        rows is predicted in chunks of this size, in memory bounded by it.
        Predictions do not depend on it. Not to be confused with
        ``batch_size``, the number of tasks per meta-batch.

    **kwargs
        Routed parameters: ``module__*``, ``optimizer__*``, ``callbacks__*``,
        ``iterator_train__*`` (shuffled by default).

    Attributes
    ----------
    module_ : torch.nn.Module
        The pre-trained backbone (meta state).

    head_ : torch.nn.Module
        The pre-training layer (``head_.linear``) and the mean feature of
        the pooled examples (``head_.feature_mean``) (meta state).

    meta_n_classes_ : int
        Number of pooled meta-training classes (meta state).

    meta_n_features_in_ : int
        Features per example seen by ``meta_fit`` (meta state).

    history_ : skorch.History
        Pre-training history: ``train_loss`` and ``train_acc`` over the
        pooled classes and, with validation tasks, the few-shot
        ``valid_loss`` and ``valid_acc`` of the adaptation rule.

    classes_ : ndarray of shape (n_classes,)
        Support classes of the task ``fit`` adapted to (task state).

    prototypes_ : torch.Tensor of shape (n_classes, n_features_out) or None
        Mean transformed support feature of each class, for the centroid
        rule (task state).

    logistic_ : LogisticRegression or None
        The logistic regression fitted on the support features (task state).

    n_features_in_ : int
        Features seen by ``fit``.

    See Also
    --------
    ProtoNetClassifier : Nearest centroid with an episodically trained embedding.
    sklearn.neighbors.NearestCentroid : The centroid rule on raw features.

    References
    ----------
    Chen, W.-Y., Liu, Y.-C., Kira, Z., Wang, Y.-C. F. and Huang, J.-B.
    (2019). A closer look at few-shot classification. ICLR.

    Wang, Y., Chao, W.-L., Weinberger, K. Q. and van der Maaten, L. (2019).
    SimpleShot: revisiting nearest-neighbor classification for few-shot
    learning. arXiv:1911.04623.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import cross_val_score
    >>> from skmeta import PretrainedClassifier
    >>> from skmeta.model_selection import EpisodicSplit
    >>> from skmeta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> train, test = y < 6, y >= 6
    >>> tasks = EpisodeSampler(X[train], y[train], n_way=4, k_shot=1, n_query=5,
    ...                        n_tasks=100, random_state=0)
    >>> learner = PretrainedClassifier(max_epochs=5, verbose=0, random_state=0).meta_fit(tasks)
    >>> learner.meta_n_classes_
    6
    >>> cv = EpisodicSplit(n_way=4, k_shot=1, n_query=5, n_episodes=20, random_state=0)
    >>> cross_val_score(learner, X[test], y[test], cv=cv).shape
    (20,)
    >>> logistic = learner.set_params(classifier="logistic")  # same backbone, no retraining
    >>> cross_val_score(logistic, X[test], y[test], cv=cv).shape
    (20,)
    """

    _task_state_names = ("prototypes_", "logistic_")
    _adaptation_params = ("classifier", "normalize", "C")

    def __init__(
        self, module=MLP, *args, classifier="centroid", normalize="cl2n", C=10.0, batch_size=64, **kwargs
    ):
        kwargs.setdefault("iterator_train__shuffle", True)
        super().__init__(module, *args, batch_size=batch_size, **kwargs)
        self.classifier = classifier
        self.normalize = normalize
        self.C = C

    # ------------------------------------------------------------------
    # pre-training: skorch's ordinary loop over the pooled examples
    # ------------------------------------------------------------------
    def _meta_fit(self, tasks, val_tasks, reset, epochs=None):
        if not isinstance(tasks, (EpisodeSampler, str, bytes)) and hasattr(tasks, "__iter__"):
            # Pooled once: the class count, the training set and its feature
            # mean all read it (a sampler's pool is a view of its tensor).
            tasks = _PooledTasks(tasks)
        super()._meta_fit(tasks, val_tasks, reset, epochs)
        self._fit_feature_mean(_pool_examples(tasks)[0])
        return self

    def _check_params(self):
        super()._check_params()
        if self.normalize not in _NORMALIZE:
            raise ValueError(f"normalize must be one of {_NORMALIZE}, got {self.normalize!r}")
        if self.classifier not in _CLASSIFIERS:
            raise ValueError(f"classifier must be one of {_CLASSIFIERS}, got {self.classifier!r}")
        check_scalar(self.C, "C", numbers.Real, min_val=0, include_boundaries="neither")

    def _prepare_meta_fit(self, tasks, first, continues):
        n_classes = _pool_examples(tasks)[2]
        if continues and n_classes != self.meta_n_classes_:
            raise ValueError(
                f"tasks have {n_classes} classes, but {type(self).__name__} was pre-trained "
                f"on {self.meta_n_classes_} classes; warm start needs the same classes"
            )
        # Read by initialize_module (the size of the classification layer).
        self.meta_n_classes_ = n_classes

    def initialize_module(self):
        super().initialize_module()
        n_features = infer_n_features_out(self.module_, self.input_shape_)
        self.head_ = _PretrainHead(n_features, getattr(self, "meta_n_classes_", None))
        return self

    def get_split_datasets(self, X, y=None, **fit_params):
        X_pool, codes, _ = _pool_examples(X)
        # Validation tasks stay episodes: they measure the few-shot rule.
        valid = None if y is None else TaskDataset(y, self._encode_task)
        return Dataset(X_pool, codes), valid

    def _meta_backward(self, batch):
        # A batch here is examples and their class codes, not tasks.
        X, y = batch
        X, y = as_tensor(X, self.device, self._dtype), torch.as_tensor(y, device=self.device)
        with self._autocast():
            logits = full_precision(self.head_(self.module_(X)))
        loss = self.get_loss(logits, y, training=True)
        loss.backward()
        return loss, (logits.argmax(1) == y).float().mean()

    def _fit_feature_mean(self, X):
        set_training(self, False)
        total = 0
        with torch.no_grad(), self._autocast():
            # In chunks: the pool may be too large for one forward pass.
            for chunk in X.split(1024):
                total = total + full_precision(self.module_(as_tensor(chunk, self.device, self._dtype))).sum(0)
        self.head_.feature_mean.copy_(total / len(X))

    # ------------------------------------------------------------------
    # adaptation: a simple classifier on the (transformed) features
    # ------------------------------------------------------------------
    def embed(self, X):
        """Backbone features after the ``normalize`` transformation."""
        z = self.module_(X)
        if self.normalize is None:
            return z
        if self.normalize == "cl2n":
            z = z - self.head_.feature_mean
        return normalize_rows(z)

    def _task_state(self, z_support, y_support, n_way):
        if self.classifier == "centroid" or n_way < 2:
            return {"prototypes_": class_means(z_support, y_support, n_way), "logistic_": None}
        # lbfgs on a few dozen support examples converges well within 1000 iterations.
        logistic = LogisticRegression(C=self.C, max_iter=1000)
        logistic.fit(z_support.detach().cpu().numpy(), y_support.cpu().numpy())
        return {"prototypes_": None, "logistic_": logistic}

    def _logits(self, z_query, prototypes_, logistic_):
        if logistic_ is None:
            # As ProtoNet's: in units of an exact power-of-two scale, the
            # nearest prototype at 0, so huge distances give -inf, not NaN.
            scale = power_of_two_scale(z_query, prototypes_)
            distances = torch.cdist(z_query / scale, prototypes_ / scale).pow(2)
            return -(distances - distances.amin(1, keepdim=True).detach()) * scale * scale
        scores = logistic_.decision_function(z_query.detach().cpu().numpy())
        if scores.ndim == 1:  # binary: the softmax of (0, d) is (1 - sigmoid(d), sigmoid(d))
            scores = np.stack([np.zeros_like(scores), scores], axis=1)
        # Shifted in float64, so that the top score of a row survives the
        # cast to float32 however large the scores are.
        scores = scores - scores.max(axis=1, keepdims=True)
        return torch.as_tensor(scores, dtype=z_query.dtype, device=z_query.device)


class _PooledTasks(list):
    """A task collection read once, with its pooled examples."""

    def __init__(self, tasks):
        super().__init__(tasks)
        self.pool = None


def _pool_examples(tasks):
    """Examples of a task collection under class codes: ``(X, codes, n_classes)``."""
    if isinstance(tasks, _PooledTasks):
        if tasks.pool is None:
            tasks.pool = _pool_examples(list(tasks))
        return tasks.pool
    if isinstance(tasks, EpisodeSampler):
        # The sampler's pool; its codes keep the classes made by
        # augmentation apart (Task.classes would merge them).
        X, codes = tasks.pool()
        return X, codes, tasks.n_classes_
    Xs, labels = [], []
    for index, task in enumerate(tasks):
        try:
            X_support, X_query = check_task(task, numeric=False)
        except (TypeError, ValueError) as error:
            raise type(error)(f"task {index} of the collection: {error}") from error
        for X, y in ((X_support, task.y_support), (X_query, task.y_query)):
            y = np.asarray(y.cpu() if torch.is_tensor(y) else y)
            if task.classes is not None:
                classes = np.asarray(task.classes)
                if not np.issubdtype(y.dtype, np.integer) or (len(y) and (y.min() < 0 or y.max() >= len(classes))):
                    raise ValueError(
                        f"with Task.classes of {len(classes)} labels, task labels must be integers "
                        f"0 .. {len(classes) - 1} indexing it"
                    )
                y = classes[y]
            Xs.append(X)
            labels.append(y)
    shapes = {tuple(X.shape[1:]) for X in Xs}
    if len(shapes) > 1:
        raise ValueError(f"tasks have examples of different shapes: {sorted(shapes)}")
    classes, codes = np.unique(np.concatenate(labels), return_inverse=True)
    return torch.cat(Xs), torch.as_tensor(codes, dtype=torch.long), len(classes)
