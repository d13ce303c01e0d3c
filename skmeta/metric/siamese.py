"""Siamese networks for one-shot recognition (Koch et al., 2015)."""

import torch
from torch import nn
from torch.nn import functional as F

from ..modules import MLP, infer_n_features_out
from ._base import MetricMetaLearner

__all__ = ["SiameseNetworkClassifier"]


class SiameseNetworkClassifier(MetricMetaLearner):
    """Siamese networks: a learned same/different similarity, used as a
    nearest-neighbour rule.

    Two inputs go through the same embedding network (the twins); their
    similarity is ``p(same) = sigmoid(sum_j alpha_j |h1_j - h2_j| + b)``, a
    learned weighting of the component-wise L1 distance (Koch et al.'s
    head). ``meta_fit`` trains embedding and head on the tasks' episodes by
    the cross-entropy of each query's class under the rule ``predict``
    applies; with ``criterion=torch.nn.BCEWithLogitsLoss`` it trains them
    as Koch et al. do instead, by binary cross-entropy on same/different
    pairs: every pair of examples of an episode (support and query
    together), same-class and different-class pairs weighted equally.
    ``fit`` stores the embedded support set; ``predict`` picks the class of
    the most similar support example; ``predict_proba`` is each class's
    similarity (of its most similar support example) normalised over the
    classes.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The twin embedding network; :class:`~skmeta.modules.Conv4` for
        images. Arguments go in as ``module__<name>``.

    criterion : torch criterion class, default=torch.nn.CrossEntropyLoss
        With ``torch.nn.CrossEntropyLoss`` (or a subclass): the softmax
        cross-entropy of the query labels over the classes' scores, the log
        similarity of each class's most similar support example, i.e. the
        episode's classification, which ``predict`` solves. Any other
        criterion is Koch et al.'s verification objective: the loss of a
        pair's similarity logit against 1 (same) or 0 (different), over
        every pair of an episode's examples (``torch.nn.BCEWithLogitsLoss``).
        On Omniglot, 2 minutes of 5-way 1-shot meta-training gave 87.62 %
        with the first against 77.32 % with the second
        (docs/benchmarks/omniglot.md).

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

    similarity_ : torch.nn.Linear
        The meta-learned head: weights ``alpha`` of the L1 distance and bias
        (meta state).

    meta_n_features_in_ : int
        Features per example seen by ``meta_fit`` (meta state).

    history_ : skorch.History
        Meta-training history; ``train_acc`` is the episodes' query accuracy.

    classes_ : ndarray of shape (n_classes,)
        Support classes of the task ``fit`` adapted to (task state).

    support_embeddings_ : torch.Tensor of shape (n_support, n_features_out)
        Embedded support examples (task state).

    support_one_hot_ : torch.Tensor of shape (n_support, n_classes)
        Support labels as one-hot rows (task state).

    n_features_in_ : int
        Features seen by ``fit``.

    See Also
    --------
    MatchingNetworkClassifier : A soft nearest neighbour under cosine similarity.
    sklearn.neighbors.KNeighborsClassifier : Use it on ``transform(X)``.

    References
    ----------
    Koch, G., Zemel, R. and Salakhutdinov, R. (2015). Siamese neural networks
    for one-shot image recognition. ICML Deep Learning Workshop.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import cross_val_score
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from skmeta import SiameseNetworkClassifier
    >>> from skmeta.model_selection import EpisodicSplit
    >>> from skmeta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> train, test = y < 6, y >= 6
    >>> tasks = EpisodeSampler(X[train], y[train], n_way=4, k_shot=1, n_query=5,
    ...                        n_tasks=100, random_state=0)
    >>> siamese = SiameseNetworkClassifier(max_epochs=2, verbose=0, random_state=0).meta_fit(tasks)
    >>> cv = EpisodicSplit(n_way=4, k_shot=1, n_query=5, n_episodes=20, random_state=0)
    >>> cross_val_score(siamese, X[test], y[test], cv=cv).shape
    (20,)
    >>> pipe = make_pipeline(siamese, KNeighborsClassifier(1))
    >>> cross_val_score(pipe, X[test], y[test], cv=cv).shape
    (20,)
    """

    _task_state_names = ("support_embeddings_", "support_one_hot_")

    def __init__(self, module=MLP, *args, criterion=torch.nn.CrossEntropyLoss, **kwargs):
        super().__init__(module, *args, criterion=criterion, **kwargs)

    def initialize_module(self):
        super().initialize_module()
        n_features = infer_n_features_out(self.module_, self.input_shape_)
        self.similarity_ = nn.Linear(n_features, 1)
        return self

    def _similarity_logits(self, z_a, z_b):
        """Logits of p(same) of paired rows of ``z_a`` and ``z_b``."""
        return self.similarity_((z_a - z_b).abs()).squeeze(1)

    def _task_state(self, z_support, y_support, n_way):
        return {
            "support_embeddings_": z_support,
            "support_one_hot_": F.one_hot(y_support, n_way).to(z_support.dtype),
        }

    def _logits(self, z_query, support_embeddings_, support_one_hot_):
        n_query, n_support = len(z_query), len(support_embeddings_)
        pairs = self._similarity_logits(
            z_query.repeat_interleave(n_support, dim=0), support_embeddings_.repeat(n_query, 1)
        ).reshape(n_query, n_support)
        # Each class scores by its most similar support example; as log
        # p(same), the softmax of the scores is the normalised similarity.
        mask = support_one_hot_.log()  # 0 on the class's examples, -inf elsewhere
        best = (pairs.unsqueeze(2) + mask.unsqueeze(0)).amax(dim=1)
        return F.logsigmoid(best)

    def _episode_loss(self, task, z_support, z_query, logits, training):
        if isinstance(self.criterion_, torch.nn.CrossEntropyLoss):
            return super()._episode_loss(task, z_support, z_query, logits, training)
        z = torch.cat([z_support, z_query])
        y = torch.cat([task.y_support, task.y_query])
        first, second = torch.triu_indices(len(z), len(z), offset=1, device=z.device)
        scores = self._similarity_logits(z[first], z[second])
        same = y[first] == y[second]
        # Most pairs of an episode are different; Koch et al. train on equal
        # numbers of same and different pairs, so the two kinds weigh equally.
        losses = [
            self.get_loss(scores[chosen], torch.full_like(scores[chosen], target), training=training)
            for target, chosen in ((1.0, same), (0.0, ~same))
            if chosen.any()
        ]
        return torch.stack(losses).mean()
