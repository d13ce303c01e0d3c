"""Prototypical Networks (Snell et al., 2017)."""


from ..modules import MLP
from ._base import MetricMetaLearner, class_means, normalize_rows, power_of_two_scale

__all__ = ["ProtoNetClassifier"]

_DISTANCES = ("sqeuclidean", "euclidean", "cosine")


class ProtoNetClassifier(MetricMetaLearner):
    """Prototypical Networks: nearest class mean in a meta-learned embedding.

    At adaptation time a prototypical network *is* a nearest-centroid
    classifier (:class:`sklearn.neighbors.NearestCentroid`) in embedding
    space: ``fit`` stores the mean embedding of each support class,
    ``predict`` picks the closest. ``meta_fit`` learns the embedding so that
    this works on classes never seen in meta-training, by minimising the
    cross-entropy of the softmax over negative distances to the prototypes
    of each episode.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The embedding network; :class:`~skmeta.modules.Conv4` for images.
        Arguments go in as ``module__<name>``.

    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance to the prototypes; the paper's squared Euclidean distance
        is a Bregman divergence, for which the class mean is the right
        prototype. Read by ``meta_fit`` and by ``predict``: changing it
        after meta-training evaluates the learned embedding under another
        metric.

    optimizer, lr, max_epochs, batch_size, callbacks, warm_start, verbose, device
        Meta-training, as in :class:`skorch.NeuralNet`; ``batch_size`` is
        the number of episodes per meta-parameter update.

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation and meta-training.

    predict_batch_size : int, default=512
        Query rows scored at once by ``predict``, ``predict_proba``,
        ``score`` (and ``transform`` where there is one): any number of
        rows is predicted in chunks of this size, in memory bounded by it.
        Predictions do not depend on it. Not to be confused with
        ``batch_size``, the number of tasks per meta-batch.

    **kwargs
        Routed parameters: ``module__*``, ``optimizer__*``, ``callbacks__*``.

    Attributes
    ----------
    module_ : torch.nn.Module
        The meta-learned embedding network (meta state).

    meta_n_features_in_ : int
        Features per example seen by ``meta_fit`` (meta state).

    history_ : skorch.History
        Meta-training history: ``train_loss``, ``train_acc`` and, with
        validation tasks, ``valid_loss``, ``valid_acc`` per epoch.

    classes_ : ndarray of shape (n_classes,)
        Support classes of the task ``fit`` adapted to (task state).

    prototypes_ : torch.Tensor of shape (n_classes, n_features_out)
        Mean support embedding of each class (task state).

    n_features_in_ : int
        Features seen by ``fit``.

    See Also
    --------
    sklearn.neighbors.NearestCentroid : The same rule on raw features.
    skmeta.model_selection.EpisodicSplit : Few-shot evaluation with ``cross_val_score``.

    References
    ----------
    Snell, J., Swersky, K. and Zemel, R. (2017). Prototypical networks for
    few-shot learning. NeurIPS.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import cross_val_score
    >>> from skmeta import ProtoNetClassifier
    >>> from skmeta.model_selection import EpisodicSplit
    >>> from skmeta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> train, test = y < 6, y >= 6
    >>> tasks = EpisodeSampler(X[train], y[train], n_way=4, k_shot=1, n_query=5,
    ...                        n_tasks=100, random_state=0)
    >>> learner = ProtoNetClassifier(max_epochs=3, verbose=0, random_state=0).meta_fit(tasks)
    >>> scores = cross_val_score(learner, X[test], y[test],
    ...                          cv=EpisodicSplit(n_way=4, k_shot=1, n_query=5, n_episodes=20, random_state=0))
    >>> scores.shape
    (20,)
    """

    _task_state_names = ("prototypes_",)
    _adaptation_params = ("distance",)

    def __init__(self, module=MLP, *args, distance="sqeuclidean", **kwargs):
        super().__init__(module, *args, **kwargs)
        self.distance = distance

    def _task_state(self, z_support, y_support, n_way):
        return {"prototypes_": class_means(z_support, y_support, n_way)}

    def _check_params(self):
        super()._check_params()
        if self.distance not in _DISTANCES:
            raise ValueError(f"distance must be one of {_DISTANCES}, got {self.distance!r}")

    def _logits(self, z_query, prototypes_):
        if self.distance == "cosine":
            return normalize_rows(z_query) @ normalize_rows(prototypes_).T
        # In units of a power of two above every embedding value (an exact
        # rescaling), so that squares do not overflow float32; the nearest
        # prototype of each query scores 0, so a distance too large for
        # float32 becomes a score of -inf (probability 0), never a NaN.
        scale = power_of_two_scale(z_query, prototypes_)
        q, p = z_query / scale, prototypes_ / scale
        distances = (q.pow(2).sum(1, keepdim=True) - 2 * q @ p.T + p.pow(2).sum(1)).clamp(min=0)
        if self.distance == "euclidean":
            distances = distances.sqrt()
        relative = distances - distances.amin(1, keepdim=True).detach()
        if self.distance == "euclidean":
            return -relative * scale
        return -relative * scale * scale
