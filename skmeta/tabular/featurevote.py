"""Feature-vote networks: few-shot classification across tabular datasets
whose features differ in number and meaning."""

import math

import numpy as np
import torch
from torch import nn

from .._prediction import PREDICT_BATCH_SIZE, check_finite, predict_in_chunks
from ..base import MetaClassifierMixin, MetaLearner
from ..utils._torch import full_precision

__all__ = ["FeatureVoteNet", "FeatureVoteClassifier"]

# Per (query, class, feature) inputs of the evidence network: 6 that vary
# with the query, 4 that are constant per feature within a task.
_N_VARYING, _N_CONSTANT = 6, 4
# Elements of the largest (query, class, feature, hidden) block built at
# once: predictions on many rows are made in chunks of bounded memory.
_CHUNK_ELEMENTS = 1 << 22


def _comparisons(t):
    """A distance, and the same relative to the nearest and the average class."""
    return [t, t - t.min(1, keepdim=True).values, t - t.mean(1, keepdim=True)]


class FeatureVoteNet(nn.Module):
    """The network of :class:`FeatureVoteClassifier`, for any number of features.

    Every feature of a task is treated alike, whatever its position: the
    network is equivariant to permuting features and invariant to shifting
    and (positively) rescaling any of them, because it only sees
    scale-free statistics of the support set.

    - Per feature, from the support set: the class means, the spread of all
      support rows (``scale``) and the pooled within-class spread
      (``within``, zero at one shot).
    - Per query, class and feature: ``log1p`` of the distance to the class
      mean in units of ``scale`` and of ``within``, each also relative to
      the nearest and the average class; the evidence network maps them,
      with the feature's constants (within/scale ratio, fraction of
      distinct values, log shots, 1/ways), to a score.
    - A relevance network weights each feature from those constants; a
      class's logit is minus the relevance-weighted mean score. Features
      constant on the support set get no weight.
    - With two or more shots per class, a ridge-regression classifier on
      the per-task standardised features (Bertinetto et al., 2019) is
      added, its regularisation and weight meta-learned as functions of
      shots and ways: it sees correlations between features that the
      feature-wise vote does not.

    Parameters
    ----------
    hidden_size : int, default=32
        Width of the evidence and relevance networks.

    ridge : bool, default=True
        Add the ridge-regression head.

    Examples
    --------
    >>> import torch
    >>> from skmeta.tabular import FeatureVoteNet
    >>> net = FeatureVoteNet()
    >>> X_support, y_support = torch.randn(6, 7), torch.tensor([0, 0, 1, 1, 2, 2])
    >>> net(X_support, y_support, torch.randn(4, 7), n_way=3).shape
    torch.Size([4, 3])
    """

    def __init__(self, hidden_size=32, ridge=True):
        super().__init__()
        self.hidden_size = hidden_size
        self.ridge = ridge
        self.evidence = nn.Sequential(
            nn.Linear(_N_VARYING + _N_CONSTANT, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, 1),
        )
        self.relevance = nn.Sequential(nn.Linear(_N_CONSTANT, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 1))
        self.log_temperature = nn.Parameter(torch.tensor(1.0))
        if ridge:
            # log regularisation and log weight of the ridge head from (log
            # shots, 1/ways); starts as a light touch on the vote.
            self.ridge_mix = nn.Linear(2, 2)
            nn.init.zeros_(self.ridge_mix.weight)
            nn.init.constant_(self.ridge_mix.bias, -2.0)

    def task_state(self, X, y, n_way):
        """Everything the logits of queries need from a support set.

        Parameters
        ----------
        X : float tensor of shape (n_support, n_features)
        y : long tensor of shape (n_support,), codes ``0 .. n_way - 1``
        n_way : int

        Returns
        -------
        state : dict of str to tensor
        """
        n, d = X.shape
        # Statistics in float32 even under bfloat16 autocast: class means of
        # features with large offsets lose their differences in bfloat16.
        with torch.autocast(X.device.type, enabled=False):
            X = full_precision(X)
            onehot = nn.functional.one_hot(y, n_way).to(X.dtype)
            means = onehot.T @ X / onehot.sum(0).clamp(min=1).unsqueeze(1)
            center = X.mean(0)
            scale = (X - center).pow(2).mean(0).sqrt()
            dof = n - int((onehot.sum(0) > 0).sum())
            within = ((X - means[y]).pow(2).sum(0) / max(dof, 1)).sqrt()
            # A spread below float32 rounding of the values is no spread.
            valid = scale > 1e-6 * (center.abs() + 1)
            scale = torch.where(valid, scale, torch.ones_like(scale))
            has_within = (within > 1e-6 * scale).to(X.dtype)
            within = torch.where(has_within > 0, within, scale)
            ordered = X.sort(0).values
            distinct = (1 + (ordered[1:] != ordered[:-1]).sum(0)).to(X.dtype) / n
        log_shots = math.log(n / n_way)
        constants = torch.stack(
            [
                (has_within * within / scale).clamp(max=10),
                torch.full_like(scale, log_shots),
                distinct,
                torch.full_like(scale, 1.0 / n_way),
            ],
            1,
        )
        first = self.evidence[0]
        relevance = full_precision(nn.functional.softplus(self.relevance(constants).squeeze(1))) * valid
        state = {
            "means": means,
            "scale": scale,
            "within": within,
            "has_within": has_within,
            # The constant inputs enter the first layer as a per-feature bias.
            "feature_bias": nn.functional.linear(constants, first.weight[:, _N_VARYING:], first.bias),
            "relevance": relevance / relevance.sum().clamp(min=1e-12),
        }
        if self.ridge and dof > 0:
            state.update(self._ridge_state(X, y, n_way, center, scale, valid, log_shots))
        return state

    def _ridge_state(self, X, y, n_way, center, scale, valid, log_shots):
        # The solve in float32 even under bfloat16 autocast (which has no
        # bfloat16 linalg.solve, and too few digits for a Gram matrix).
        with torch.autocast(X.device.type, enabled=False):
            X, center, scale = full_precision(X), full_precision(center), full_precision(scale)
            log_lambda, log_weight = self.ridge_mix(X.new_tensor([log_shots, 1.0 / n_way]))
            Z = ((X - center) / scale).clamp(-5, 5) * valid
            n_valid = valid.sum().clamp(min=1)
            targets = nn.functional.one_hot(y, n_way).to(X.dtype) - 1.0 / n_way
            # Dual form (Woodbury): an n_support x n_support solve, however many features.
            gram = Z @ Z.T / n_valid + log_lambda.exp() * torch.eye(len(Z), dtype=X.dtype, device=X.device)
            coef = Z.T @ torch.linalg.solve(gram, targets) / n_valid
        return {"center": center, "ridge_coef": 10 * log_weight.exp() * coef, "valid": valid}

    def logits(self, X, means, scale, within, has_within, feature_bias, relevance,
               center=None, ridge_coef=None, valid=None):
        """Logits of queries ``X`` against a task state, (n_queries, n_way)."""
        n_way, d = means.shape
        rows = max(1, _CHUNK_ELEMENTS // max(1, n_way * d * self.hidden_size))
        chunks = [self._vote(part, means, scale, within, has_within, feature_bias, relevance)
                  for part in torch.split(X, rows)]
        logits = torch.cat(chunks) if chunks else X.new_zeros((0, n_way))
        if ridge_coef is not None:
            logits = full_precision(logits) + (((full_precision(X) - center) / scale).clamp(-5, 5) * valid) @ ridge_coef
        return logits

    def _vote(self, X, means, scale, within, has_within, feature_bias, relevance):
        diff = (full_precision(X).unsqueeze(1) - means).abs()
        varying = torch.stack(
            _comparisons(torch.log1p(diff / scale)) + _comparisons(torch.log1p(diff / within) * has_within), -1
        )
        first = self.evidence[0]
        hidden = nn.functional.linear(varying, first.weight[:, :_N_VARYING]) + feature_bias
        scores = self.evidence[1:](hidden).squeeze(-1)  # (n_queries, n_way, n_features)
        return -(scores @ relevance) * self.log_temperature.exp()

    def forward(self, X_support, y_support, X_query, n_way):
        return self.logits(X_query, **self.task_state(X_support, y_support, n_way))


class FeatureVoteClassifier(MetaClassifierMixin, MetaLearner):
    """Few-shot classifier that meta-trains across datasets with different features.

    Tabular datasets share no feature space: one has 4 numeric columns,
    the next 60 nominal ones. A feature-vote network learns what transfers
    between them, how a feature's support statistics tell how far to trust
    it, and how a distance on one feature is evidence for a class: every
    feature casts a learned vote for every class, from scale-free
    statistics of the support set, weighted by a learned relevance (see
    :class:`FeatureVoteNet`). With two or more shots a meta-learned ridge
    classifier on the per-task standardised features joins in.

    ``meta_fit`` takes tasks of any width, e.g. a
    :class:`~skmeta.tasks.DatasetCollection` over many datasets with a range
    of ways and shots; ``fit`` adapts to a new dataset from its support set
    alone (no gradient steps: the task state is a handful of per-feature
    statistics), whatever its number of features. The learner standardises
    per task itself, so put no scaler in front of it; one-hot encode
    nominal features (``OneHotEncoder(handle_unknown="ignore")``).

    Unlike the other meta-learners, the feature count of ``fit`` is not
    checked against ``meta_fit``: adapting to other features is the point.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=FeatureVoteNet
        The network; arguments go in as ``module__<name>``
        (``module__hidden_size``, ``module__ridge``).

    lr : float, default=3e-3
        Adam's step size in ``meta_fit``.

    batch_size : int, default=4
        Tasks per meta-update.

    optimizer, max_epochs, callbacks, warm_start, verbose, device
        Meta-training, as in :class:`skorch.NeuralNet`.

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation and meta-training.

    predict_batch_size : int, default=512
        Query rows scored at once by ``predict``, ``predict_proba`` and
        ``score``: any number of rows is predicted in chunks of this size,
        in memory bounded by it. Predictions do not depend on it. Not to be
        confused with ``batch_size``, the number of tasks per meta-batch.

    **kwargs
        Routed parameters: ``module__*``, ``optimizer__*``, ``callbacks__*``.

    Attributes
    ----------
    module_ : FeatureVoteNet
        The meta-learned network (meta state).

    history_ : skorch.History
        Meta-training history: ``train_loss``, ``train_acc`` and, with
        validation tasks, ``valid_loss``, ``valid_acc`` per epoch.

    classes_ : ndarray of shape (n_classes,)
        Support classes of the task ``fit`` adapted to (task state).

    task_state_ : dict of str to torch.Tensor
        Support statistics the queries are scored against (task state).

    feature_relevance_ : ndarray of shape (n_features,)
        Weight of each feature's vote in this task, summing to 1 (task
        state); zero for features constant on the support set.

    n_features_in_ : int
        Features seen by ``fit``.

    See Also
    --------
    skmeta.tasks.DatasetCollection : Episodes across datasets.
    skmeta.ProtoNetClassifier : Within one feature space.

    References
    ----------
    Iwata, T. and Kumagai, A. (2020). Meta-learning from tasks with
    heterogeneous attribute spaces. NeurIPS.

    Bertinetto, L., Henriques, J. F., Torr, P. H. S. and Vedaldi, A. (2019).
    Meta-learning with differentiable closed-form solvers. ICLR.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
    >>> from sklearn.model_selection import cross_val_score
    >>> from skmeta.model_selection import EpisodicSplit
    >>> from skmeta.tabular import FeatureVoteClassifier
    >>> from skmeta.tasks import DatasetCollection
    >>> tasks = DatasetCollection([load_iris(return_X_y=True), load_digits(return_X_y=True),
    ...                            load_breast_cancer(return_X_y=True)],
    ...                           n_way=(2, 3), k_shot=(1, 5), n_query=5, n_tasks=40, random_state=0)
    >>> learner = FeatureVoteClassifier(max_epochs=2, verbose=0, random_state=0).meta_fit(tasks)
    >>> X, y = load_wine(return_X_y=True)  # 13 features: never seen in meta-training
    >>> cv = EpisodicSplit(n_way=3, k_shot=1, n_query=10, n_episodes=20, random_state=0)
    >>> bool(cross_val_score(learner, X, y, cv=cv).mean() > 0.6)
    True
    """

    _fixed_n_features = False
    _task_attributes = MetaLearner._task_attributes + ("task_state_", "feature_relevance_")
    _neutral_params = MetaLearner._neutral_params + ("predict_batch_size",)

    def __init__(
        self, module=FeatureVoteNet, *args, lr=3e-3, batch_size=4, predict_batch_size=PREDICT_BATCH_SIZE, **kwargs
    ):
        super().__init__(module, *args, lr=lr, batch_size=batch_size, **kwargs)
        self.predict_batch_size = predict_batch_size

    def meta_loss(self, tasks, training):
        with torch.set_grad_enabled(training):
            losses, correct, total = [], 0, 0
            # One task at a time: tasks of a meta-batch have different widths.
            for task in tasks:
                logits = full_precision(self.module_(
                    _flat(task.X_support), task.y_support, _flat(task.X_query), task.n_way
                ))
                losses.append(self.get_loss(logits, task.y_query, training=training))
                correct = correct + (logits.argmax(1) == task.y_query).sum()  # a tensor: no device read
                total += len(task.y_query)
        return torch.stack(losses).mean(), correct / total

    def _adapt(self, X, y):
        self.task_state_ = self.module_.task_state(_flat(X), y, len(self.classes_))
        self.feature_relevance_ = self.task_state_["relevance"].cpu().numpy().astype(np.float64)

    def _predict_scores(self, X):
        def scores(rows):
            logits = self.module_.logits(rows, **self.task_state_)
            check_finite(logits, rows, self, "class scores")
            return logits

        return predict_in_chunks(scores, _flat(X), self.predict_batch_size)


def _flat(X):
    """N-D examples (images) as rows of features: every feature votes alike,
    whatever its position, so flattening loses nothing."""
    return X.reshape(len(X), -1) if X.dim() > 2 else X
