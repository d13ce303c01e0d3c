"""Matching Networks (Vinyals et al., 2016)."""

import math
import numbers

import torch
from torch import nn
from torch.nn import functional as F

from ..modules import MLP, infer_n_features_out
from ._base import MetricMetaLearner, normalize_rows

__all__ = ["MatchingNetworkClassifier", "FullContextEmbedding", "CosineScale"]


class FullContextEmbedding(nn.Module):
    """The full context embeddings of Matching Networks.

    Support embeddings are read by a bidirectional LSTM in the order of the
    support set, ``g(x_i) = g'(x_i) + h_fwd_i + h_bwd_i``; each query
    embedding ``f'(x)`` is refined by ``n_steps`` steps of an LSTM that
    attends over the contextualised support set:

    ``h_k = LSTM([f'(x), r_{k-1}], (h_{k-1}, c_{k-1})) + f'(x)``, with
    ``r_k = sum_i softmax(h_k . g(x_i)) g(x_i)`` and ``h_0 = f'(x)``.

    The read-out enters the LSTM as input rather than as half of its hidden
    state (the paper's ``[h, r]``); the recurrence and the skip connections
    are the paper's.

    Parameters
    ----------
    n_features : int
        Size of the backbone's embedding.

    n_steps : int, default=5
        Attention steps ("processing steps") for each query.

    Examples
    --------
    >>> import torch
    >>> from skmeta.metric.matching import FullContextEmbedding
    >>> fce = FullContextEmbedding(8, n_steps=2)
    >>> g = fce.embed_support(torch.randn(5, 8))
    >>> fce.embed_query(torch.randn(3, 8), g).shape
    torch.Size([3, 8])
    """

    def __init__(self, n_features, n_steps=5):
        super().__init__()
        self.n_steps = int(n_steps)
        self.support_lstm = nn.LSTM(n_features, n_features, bidirectional=True)
        self.query_cell = nn.LSTMCell(2 * n_features, n_features)

    def embed_support(self, z_support):
        out, _ = self.support_lstm(z_support.unsqueeze(1))  # the support set is one sequence
        forward, backward = out.squeeze(1).chunk(2, dim=1)
        return z_support + forward + backward

    def embed_query(self, z_query, g_support):
        h, c = z_query, torch.zeros_like(z_query)
        for _ in range(self.n_steps):
            attention = torch.softmax(h @ g_support.T, dim=1)
            readout = attention @ g_support
            h, c = self.query_cell(torch.cat([z_query, readout], dim=1), (h, c))
            h = h + z_query
        return h


class CosineScale(nn.Module):
    """Multiplies its input by a positive scale, fixed or learned (through
    its logarithm, so that it stays positive).

    Parameters
    ----------
    scale : float
        The scale, or the learned scale's starting value; finite and > 0.

    learn : bool, default=False
        Whether the scale is a parameter (learned) or a buffer (fixed).

    Examples
    --------
    >>> import torch
    >>> from skmeta.metric.matching import CosineScale
    >>> CosineScale(10.0)(torch.tensor([0.5, -1.0]))
    tensor([  5., -10.])
    >>> [name for name, _ in CosineScale(10.0, learn=True).named_parameters()]
    ['log_scale']
    """

    def __init__(self, scale, learn=False):
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        log_scale = torch.tensor(math.log(scale))
        if learn:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def forward(self, x):
        return x * self.log_scale.exp().to(x.dtype)


class MatchingNetworkClassifier(MetricMetaLearner):
    """Matching Networks: attention over the support set in a meta-learned
    embedding.

    A query's class distribution is the attention it pays to the support
    examples, ``p(y | x) = sum_i softmax_i(s cos(f(x), g(x_i))) [y_i = y]``
    (Vinyals et al., eq. 1, with a meta-learned scale ``s``): a soft,
    differentiable nearest neighbour.
    ``fit`` stores the embedded support set, ``predict_proba`` returns the
    attention mass on each class, and ``meta_fit`` learns the embedding by
    minimising the cross-entropy of that distribution on the query sets of
    training episodes. Without full context embeddings and with one support
    example per class, ``predict`` is the cosine nearest neighbour
    (:class:`~sklearn.neighbors.KNeighborsClassifier` with ``n_neighbors=1,
    metric="cosine"``) in the embedding, which ``transform`` returns.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The embedding network ``f' = g'``; :class:`~skmeta.modules.Conv4`
        for images. Arguments go in as ``module__<name>``.

    fce : bool, default=False
        Full context embeddings: the support embeddings are read by a
        bidirectional LSTM over the support set and each query embedding by
        an attention LSTM over the support set
        (:class:`FullContextEmbedding`), so both depend on the whole
        episode. Then the support order matters, as in the paper, and
        ``transform`` still returns the context-free embedding ``f'``.

    fce_steps : int, default=5
        Attention steps of the query LSTM when ``fce=True``.

    scale : float, default=10.0
        Multiplies the cosine similarities before the attention softmax
        (its inverse temperature). At the paper's implicit 1 a cosine in
        [-1, 1] can put at most ``e / (e + (n - 1) / e)`` of the attention
        on one of ``n`` support examples (65 % in a 5-way 1-shot episode),
        so the query loss never stops pulling the embedding; a larger
        scale lets the attention sharpen (Oreshkin et al.'s metric
        scaling). ``scale=1.0, learn_scale=False`` is the paper's rule.

    learn_scale : bool, default=True
        Meta-learn the scale (its logarithm is a meta-parameter starting at
        ``log(scale)``) instead of keeping it fixed.

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

    context_embedding_ : FullContextEmbedding
        The meta-learned context LSTMs, when ``fce=True`` (meta state).

    scale_ : CosineScale
        The scale of the cosine similarities, meta-learned when
        ``learn_scale=True`` (meta state).

    meta_n_features_in_ : int
        Features per example seen by ``meta_fit`` (meta state).

    history_ : skorch.History
        Meta-training history.

    classes_ : ndarray of shape (n_classes,)
        Support classes of the task ``fit`` adapted to (task state).

    support_embeddings_ : torch.Tensor of shape (n_support, n_features_out)
        The (contextualised) support embeddings ``g(x_i)`` (task state).

    support_one_hot_ : torch.Tensor of shape (n_support, n_classes)
        The support labels as one-hot rows, the paper's ``y_i`` (task state).

    n_features_in_ : int
        Features seen by ``fit``.

    See Also
    --------
    ProtoNetClassifier : One prototype per class instead of attention over examples.
    sklearn.neighbors.KNeighborsClassifier : The hard nearest-neighbour rule.

    References
    ----------
    Vinyals, O., Blundell, C., Lillicrap, T., Kavukcuoglu, K. and Wierstra,
    D. (2016). Matching networks for one shot learning. NeurIPS.

    Oreshkin, B., Rodriguez Lopez, P. and Lacoste, A. (2018). TADAM: Task
    dependent adaptive metric for improved few-shot learning. NeurIPS.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import cross_val_score
    >>> from skmeta import MatchingNetworkClassifier
    >>> from skmeta.model_selection import EpisodicSplit
    >>> from skmeta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> train, test = y < 6, y >= 6
    >>> tasks = EpisodeSampler(X[train], y[train], n_way=4, k_shot=1, n_query=5,
    ...                        n_tasks=100, random_state=0)
    >>> learner = MatchingNetworkClassifier(fce=True, max_epochs=2, verbose=0,
    ...                                     random_state=0).meta_fit(tasks)
    >>> scores = cross_val_score(learner, X[test], y[test],
    ...                          cv=EpisodicSplit(n_way=4, k_shot=1, n_query=5, n_episodes=20, random_state=0))
    >>> scores.shape
    (20,)
    """

    _task_state_names = ("support_embeddings_", "support_one_hot_")

    def __init__(self, module=MLP, *args, fce=False, fce_steps=5, scale=10.0, learn_scale=True, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.fce = fce
        self.fce_steps = fce_steps
        self.scale = scale
        self.learn_scale = learn_scale

    def initialize_module(self):
        super().initialize_module()
        if not isinstance(self.fce, bool):
            raise TypeError(f"fce must be True or False, got {self.fce!r}")
        if self.fce:
            if not isinstance(self.fce_steps, numbers.Integral) or self.fce_steps < 1:
                raise ValueError(f"fce_steps must be a positive integer, got {self.fce_steps!r}")
            n_features = infer_n_features_out(self.module_, self.input_shape_)
            self.context_embedding_ = FullContextEmbedding(n_features, int(self.fce_steps))
        elif "context_embedding_" in vars(self):  # re-initialised without FCE
            del self.context_embedding_
        if not isinstance(self.learn_scale, bool):
            raise TypeError(f"learn_scale must be True or False, got {self.learn_scale!r}")
        self.scale_ = CosineScale(self.scale, learn=self.learn_scale)
        return self

    @property
    def _context(self):
        # What meta_fit built decides, not the current value of `fce`:
        # changing it after meta_fit takes effect at the next meta_fit.
        return vars(self).get("context_embedding_")

    def _task_state(self, z_support, y_support, n_way):
        if self._context is not None:
            z_support = self._context.embed_support(z_support)
        return {
            "support_embeddings_": z_support,
            "support_one_hot_": F.one_hot(y_support, n_way).to(z_support.dtype),
        }

    def _logits(self, z_query, support_embeddings_, support_one_hot_):
        if self._context is not None:
            z_query = self._context.embed_query(z_query, support_embeddings_)
        cosine = self.scale_(normalize_rows(z_query) @ normalize_rows(support_embeddings_).T)
        # log of the attention mass on each class, up to a per-query constant:
        # the softmax of these logits is the paper's sum of attention weights.
        mask = support_one_hot_.log()  # 0 on the class's examples, -inf elsewhere
        return torch.logsumexp(cosine.unsqueeze(2) + mask.unsqueeze(0), dim=1)
