"""In-context learning for tabular few-shot classification: a small
transformer reads the labelled support rows and predicts the query rows in
one forward pass, meta-trained on a synthetic prior of datasets (TabPFN's
recipe, small enough for a CPU)."""

import functools
import math
import numbers
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..base import MetaClassifierMixin, MetaLearner
from ..utils._torch import full_precision

__all__ = ["InContextNet", "InContextClassifier", "DEFAULT_WEIGHTS"]

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "_weights" / "incontext_default.pt"

# Query rows scored at once at prediction time: the attention of a chunk
# against the support set is (n_estimators, heads, chunk, n_support).
_QUERY_CHUNK = 2048


@functools.lru_cache(maxsize=4)
def _read_weights(path, mtime):
    # Cached by path and modification time: every clone of a never-fitted
    # learner (one per episode in cross_val_score) loads the weights at fit.
    return torch.load(path, map_location="cpu", weights_only=True)


class _Block(nn.Module):
    """Pre-norm transformer block in which only support rows are keys."""

    def __init__(self, d_model, n_heads, dim_feedforward):
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        # Per head, a learned bonus for attending to a support row of the
        # same class: the only way labels enter, so the network sees which
        # rows share a class, never which class it is (exact equivariance).
        self.same_class = nn.Parameter(torch.zeros(n_heads))
        self.norm2 = nn.LayerNorm(d_model)
        self.feedforward = nn.Sequential(
            nn.Linear(d_model, dim_feedforward), nn.GELU(), nn.Linear(dim_feedforward, d_model)
        )

    def _heads(self, x):
        return x.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)

    def keys(self, support):
        key, value = self.key_value(self.norm1(support)).chunk(2, -1)
        return self._heads(key), self._heads(value)

    def forward(self, tokens, key, value, bias=None):
        query = self._heads(self.query(self.norm1(tokens)))
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)
        tokens = tokens + self.out(attended.transpose(1, 2).flatten(-2))
        return tokens + self.feedforward(self.norm2(tokens))


class InContextNet(nn.Module):
    """The transformer of :class:`InContextClassifier`.

    Each row is one token: its (per-task normalised) feature values and
    missing-value indicators, zero-padded to ``max_features``, mapped
    linearly to ``d_model``. In every block, support rows attend to support
    rows (with a learned per-head bonus for rows of the same class) and
    query rows attend to support rows only, so a query's prediction never
    depends on the other queries and the support set can be encoded once.
    A class's logit pools the query's attention to that class's support
    rows (a log-mean-exp kernel) with a distance to the class mean of a
    learned projection and a learned weight on the class's support count.
    Nothing depends on which label a class has: the logits are exactly
    equivariant to relabelling classes, and any number of classes works.

    Parameters
    ----------
    max_features : int, default=100
        Input width; tasks are padded to it.
    d_model : int, default=64
    n_heads : int, default=4
    n_layers : int, default=4
    dim_feedforward : int, default=128

    Examples
    --------
    >>> import torch
    >>> from skmeta.tabular import InContextNet
    >>> net = InContextNet(max_features=8, d_model=16, n_heads=2, n_layers=1)
    >>> support, query = torch.randn(3, 6, 16), torch.randn(3, 4, 16)  # 3 ensemble members
    >>> net(support, torch.tensor([0, 0, 1, 1, 2, 2]), query, n_way=3).shape
    torch.Size([3, 4, 3])
    """

    def __init__(self, max_features=100, d_model=64, n_heads=4, n_layers=4, dim_feedforward=128):
        super().__init__()
        self.max_features = max_features
        self.d_model = d_model
        self.embed = nn.Linear(2 * max_features, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, dim_feedforward) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.read_query = nn.Linear(d_model, d_model)
        self.read_key = nn.Linear(d_model, d_model)
        self.prototype = nn.Linear(d_model, d_model)
        self.log_prototype_scale = nn.Parameter(torch.tensor(0.0))
        self.count_weight = nn.Parameter(torch.tensor(0.0))

    def support_state(self, support, y, n_way):
        """Everything queries need from an encoded support set.

        Parameters
        ----------
        support : float tensor of shape (n_members, n_support, 2 * max_features)
        y : long tensor of shape (n_support,), codes ``0 .. n_way - 1``
        n_way : int

        Returns
        -------
        state : dict
        """
        tokens = self.embed(support)
        same = (y.unsqueeze(0) == y.unsqueeze(1)).to(tokens.dtype)
        keys = []
        for block in self.blocks:
            key, value = block.keys(tokens)
            keys.append((key, value))
            tokens = block(tokens, key, value, bias=block.same_class.to(tokens.dtype)[:, None, None] * same)
        tokens = self.norm(tokens)
        onehot = F.one_hot(y, n_way).to(tokens.dtype)
        counts = onehot.sum(0)
        means = onehot.T @ self.prototype(tokens) / counts.clamp(min=1).unsqueeze(1)
        return {
            "keys": keys,
            "read_key": self.read_key(tokens),
            "means": means,
            "onehot": onehot,
            "log_counts": counts.clamp(min=1).log(),
        }

    def query_logits(self, query, state):
        """Logits (n_members, n_queries, n_way) of encoded queries."""
        tokens = self.embed(query)
        for block, (key, value) in zip(self.blocks, state["keys"]):
            tokens = block(tokens, key, value)
        tokens = self.norm(tokens)
        scores = self.read_query(tokens) @ state["read_key"].transpose(1, 2) / math.sqrt(self.d_model)
        # log-mean-exp of the attention scores over each class's rows; a
        # class too far to register at float precision gets a floor, not -inf.
        top = scores.max(-1, keepdim=True).values.detach()
        kernel = top + (torch.exp(scores - top) @ state["onehot"]).clamp(min=1e-30).log() - state["log_counts"]
        distance = (self.prototype(tokens).unsqueeze(2) - state["means"].unsqueeze(1)).pow(2).mean(-1)
        return kernel - self.log_prototype_scale.exp() * distance + self.count_weight * state["log_counts"]

    def forward(self, support, y_support, query, n_way):
        return self.query_logits(query, self.support_state(support, y_support, n_way))


def _draw_members(n_features, max_features, n_members, ordered_first=True):
    """Feature columns (n_members, min(n_features, max_features)) and a
    squashing flag per member: the first member keeps the features in order
    unsquashed (``ordered_first``), the others permute (or, beyond
    ``max_features``, subsample) them, and every second one squashes."""
    width = min(n_features, max_features)
    columns = [torch.arange(width)] if ordered_first and n_features <= max_features else []
    while len(columns) < n_members:
        columns.append(torch.randperm(n_features)[:width])
    squash = torch.arange(n_members) % 2 == 1
    return torch.stack(columns), squash


def _normalisation(X_support, columns):
    """Per member and feature: mean, spread and usability on the support set."""
    X = X_support[:, columns].transpose(0, 1)  # (n_members, n_support, width)
    observed = ~torch.isnan(X)
    count = observed.sum(1)
    mean = torch.where(observed, X, 0).sum(1) / count.clamp(min=1)
    std = (torch.where(observed, X - mean.unsqueeze(1), 0).pow(2).sum(1) / count.clamp(min=1)).sqrt()
    # A feature constant on the support set (or missing throughout) says
    # nothing about the classes; a spread below float32 rounding is none.
    usable = (count > 0) & (std > 1e-6 * (mean.abs() + 1))
    return {"columns": columns, "mean": mean, "std": torch.where(usable, std, torch.ones_like(std)),
            "usable": usable}


def _encode(X, norm, squash, max_features):
    """Rows as network input (n_members, n_rows, 2 * max_features): z-scores
    against the support set (asinh-squashed for some members), zero where
    missing or unusable, scaled so that a row's norm does not depend on the
    number of usable features (a constant column changes nothing); then
    missing-value indicators."""
    X = X[:, norm["columns"]].transpose(0, 1)
    missing = torch.isnan(X)
    Z = ((X - norm["mean"].unsqueeze(1)) / norm["std"].unsqueeze(1)).clamp(-100, 100)
    Z = torch.where(squash[:, None, None], torch.asinh(Z), Z.clamp(-10, 10))
    Z = torch.where(missing | ~norm["usable"].unsqueeze(1), 0, Z)
    n_members, n_rows, width = Z.shape
    encoded = Z.new_zeros(n_members, n_rows, 2 * max_features)
    used = norm["usable"].sum(1).clamp(min=1).to(Z.dtype)
    encoded[..., :width] = Z * (max_features / used).sqrt()[:, None, None]
    encoded[..., max_features:max_features + width] = missing.to(Z.dtype)
    return encoded


class InContextClassifier(MetaClassifierMixin, MetaLearner):
    """Few-shot classifier on any table, by in-context learning (TabPFN-style).

    A small transformer (:class:`InContextNet`) takes the labelled support
    rows and the query rows and predicts the queries in one forward pass;
    it is meta-trained on many tasks so that this forward pass learns a
    new dataset from its few rows. ``fit`` stores the support set and
    encodes it; ``predict_proba`` runs the queries through the network.
    Meta-training needs no real data: the shipped default weights were
    meta-trained on the synthetic prior of
    :func:`~skmeta.datasets.make_prior_tasks` only, so
    ``InContextClassifier().fit(X, y).predict(X_new)`` works on any
    numeric table without ``meta_fit``. ``meta_fit`` (on a
    :class:`~skmeta.tasks.DatasetCollection` of your own datasets, the
    prior, or both) continues from those weights.

    Inside each task, every feature is standardised on the support rows
    (so the scale of features does not matter); features constant on the
    support set are ignored; missing values (NaN) become 0 with a
    missing-value indicator. Up to ``max_features`` (100 for the default
    weights) features are read; a wider table gives each ensemble member a
    random subset of them. The network is exactly invariant to the order
    of the support rows and exactly equivariant to relabelling classes (it
    only sees which support rows share a class), and takes any number of
    classes, since a class's logit is computed from its support rows
    alone; the default weights were meta-trained with 2 to 10 classes.

    Parameters
    ----------
    pretrained : bool or path-like, default=True
        Start from shipped weights: True for the default ones, a path for a
        file written by ``benchmarks/train_incontext_default.py`` (a
        state_dict and its ``module__*`` configuration). A never
        meta-fitted learner loads them at its first ``fit``; ``meta_fit``
        starts from them. False starts from a random initialisation
        (``fit`` then warns that the learner was never meta-fitted).

    n_estimators : int, default=4
        Ensemble members at prediction time, whose class probabilities are
        averaged: the first reads the features in order, the others in a
        random order (and a random subset beyond ``max_features``), and
        every second one squashes the z-scores with ``asinh``.

    module : torch.nn.Module class or instance, default=InContextNet
        The network; with ``pretrained=False`` its arguments go in as
        ``module__<name>`` (``module__max_features``, ``module__d_model``,
        ``module__n_layers``, ...). With ``pretrained`` they come from the
        weights file.

    lr : float, default=1e-4
        Adam's step size in ``meta_fit`` (small: fine-tuning the shipped
        weights).

    batch_size : int, default=8
        Tasks per meta-update.

    optimizer, max_epochs, callbacks, warm_start, verbose, device, precision
        Meta-training, as in :class:`skorch.NeuralNet` and
        :class:`~skmeta.base.MetaLearner`.

    random_state : int, RandomState instance or None, default=None
        Seeds the random initialisation, meta-training and the ensemble
        members' feature orders.

    **kwargs
        Routed parameters: ``module__*``, ``optimizer__*``, ``callbacks__*``.

    Attributes
    ----------
    module_ : InContextNet
        The meta-learned network (meta state).

    history_ : skorch.History
        Meta-training history (``train_loss``, ``train_acc``, ...).

    classes_ : ndarray of shape (n_classes,)
        Support classes of the task ``fit`` adapted to (task state).

    support_state_ : dict
        The encoded support set of every ensemble member: per-feature
        normalisation and the network's keys (task state).

    n_features_in_ : int
        Features seen by ``fit``.

    See Also
    --------
    skmeta.datasets.make_prior_tasks : The synthetic prior.
    FeatureVoteClassifier : Another learner across datasets.

    References
    ----------
    Hollmann, N., Mueller, S., Eggensperger, K. and Hutter, F. (2023).
    TabPFN: a transformer that solves small tabular classification
    problems in a second. ICLR.

    Mueller, S., Hollmann, N., Pineda Arango, S., Grabocka, J. and Hutter, F.
    (2022). Transformers can do Bayesian inference. ICLR.

    Examples
    --------
    >>> from sklearn.datasets import load_wine
    >>> from sklearn.model_selection import cross_val_score
    >>> from skmeta.model_selection import EpisodicSplit
    >>> from skmeta.tabular import InContextClassifier
    >>> X, y = load_wine(return_X_y=True)
    >>> cv = EpisodicSplit(n_way=3, k_shot=1, n_query=10, n_episodes=20, random_state=0)
    >>> bool(cross_val_score(InContextClassifier(random_state=0), X, y, cv=cv).mean() > 0.6)
    True
    """

    _fixed_n_features = False
    # NaN is a missing value (encoded as 0 plus an indicator); infinity is an error.
    _allow_nan = True
    _task_attributes = MetaLearner._task_attributes + ("support_state_",)
    _adaptation_params = ("n_estimators",)

    def __init__(self, module=InContextNet, *args, pretrained=True, n_estimators=4, lr=1e-4, batch_size=8,
                 **kwargs):
        super().__init__(module, *args, lr=lr, batch_size=batch_size, **kwargs)
        self.pretrained = pretrained
        self.n_estimators = n_estimators

    # ------------------------------------------------------------------
    # shipped weights
    # ------------------------------------------------------------------
    def _weights_path(self):
        if self.pretrained is True:
            return DEFAULT_WEIGHTS
        if self.pretrained is False or self.pretrained is None:
            return None
        if isinstance(self.pretrained, (str, Path)):
            return Path(self.pretrained)
        raise TypeError(f"pretrained must be True, False or a path, got {type(self.pretrained).__name__}")

    def initialize_module(self):
        path = self._weights_path()
        if path is None:
            return super().initialize_module()
        if not path.is_file():
            raise FileNotFoundError(f"no InContextClassifier weights at {path}; pass pretrained=False to "
                                    "start from a random initialisation")
        saved = _read_weights(str(path), path.stat().st_mtime_ns)
        given = self.get_params_for("module")
        clash = {k: v for k, v in given.items() if saved["config"].get(k, v) != v}
        if clash:
            raise ValueError(f"module parameters {clash} differ from the pretrained weights' "
                             f"{ {k: saved['config'][k] for k in clash} }; pass pretrained=False to change them")
        self.module_ = InContextNet(**saved["config"])
        self.module_.load_state_dict(saved["state_dict"])
        self.module_.to(self.device)
        return self

    def _check_params(self):
        super()._check_params()
        if not isinstance(self.n_estimators, numbers.Integral) or isinstance(self.n_estimators, bool) \
                or self.n_estimators < 1:
            raise ValueError(f"n_estimators must be a positive integer, got {self.n_estimators!r}")
        self._weights_path()  # a TypeError for what is not True, False or a path

    def _prepare_meta_state(self, shape):
        if not self._is_meta_fitted() and self._weights_path() is not None:
            # The shipped weights are meta state, as if meta_fit had run:
            # clones keep them and fit leaves them untouched from now on.
            with self._seeded():
                self.initialize()
            self.meta_input_shape_ = (self.module_.max_features,)
            self.meta_n_features_in_ = self.module_.max_features
            self.meta_params_ = self._meta_param_snapshot()
        super()._prepare_meta_state(shape)

    # ------------------------------------------------------------------
    # the hooks
    # ------------------------------------------------------------------
    def meta_loss(self, tasks, training):
        with torch.set_grad_enabled(training):
            losses, correct, total = [], 0, 0
            max_features = self.module_.max_features
            for task in tasks:
                # One random member per task: meta-training sees the feature
                # orders, subsets and squashing that prediction ensembles over.
                columns, _ = _draw_members(task.X_support.shape[1], max_features, 1, ordered_first=False)
                squash = (torch.rand(1) < 0.5).to(task.X_support.device)
                norm = _normalisation(task.X_support, columns.to(task.X_support.device))
                logits = self.module_(
                    _encode(task.X_support, norm, squash, max_features), task.y_support,
                    _encode(task.X_query, norm, squash, max_features), task.n_way,
                )[0]
                logits = full_precision(logits)
                losses.append(self.get_loss(logits, task.y_query, training=training))
                correct = correct + (logits.argmax(1) == task.y_query).sum()  # a tensor: no device read
                total += len(task.y_query)
        return torch.stack(losses).mean(), correct / total

    def _adapt(self, X, y):
        columns, squash = _draw_members(X.shape[1], self.module_.max_features, int(self.n_estimators))
        norm, squash = _normalisation(X, columns.to(X.device)), squash.to(X.device)
        encoded = _encode(X, norm, squash, self.module_.max_features)
        self.support_state_ = {"norm": norm, "squash": squash,
                               "network": self.module_.support_state(encoded, y, len(self.classes_))}

    def _predict_scores(self, X):
        state = self.support_state_
        chunks = []
        for part in torch.split(X, _QUERY_CHUNK):
            encoded = _encode(part, state["norm"], state["squash"], self.module_.max_features)
            log_proba = torch.log_softmax(full_precision(self.module_.query_logits(encoded, state["network"])), -1)
            # The ensemble averages probabilities; their log is a valid logit.
            chunks.append(torch.logsumexp(log_proba, 0) - math.log(len(log_proba)))
        return torch.cat(chunks) if chunks else X.new_zeros((0, len(self.classes_)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.three_d_array = False
        return tags
