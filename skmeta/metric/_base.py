"""What every metric-based learner shares: an embedding, episodes embedded in
one forward pass, and the learner as a transformer to that embedding.

A metric method is its scoring rule: ``_task_state`` (what it keeps of an
embedded support set) and ``_logits`` (how queries are scored against it).
"""

from abc import abstractmethod

import numpy as np
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import validate_data

from .._prediction import PREDICT_BATCH_SIZE, check_finite, predict_in_chunks
from ..base import MetaClassifierMixin, MetaLearner
from ..utils._torch import full_precision, set_training
from ..modules import infer_n_features_out

__all__ = ["MetricMetaLearner", "class_means", "normalize_rows", "power_of_two_scale"]


def class_means(z, y, n_way):
    """Mean of the rows of ``z`` in each class ``0 .. n_way - 1`` of ``y``, (n_way, n_features)."""
    sums = torch.zeros(n_way, z.shape[1], dtype=z.dtype, device=z.device)
    sums.index_add_(0, y, z)
    counts = torch.bincount(y, minlength=n_way).clamp(min=1).to(z.dtype)
    return sums / counts.unsqueeze(1)


def power_of_two_scale(*tensors, dim=None):
    """1, or for values of huge magnitude a power of two that brings them
    below 2**32.

    Dividing by a power of two is exact in floating point (only the
    exponent changes), and values below 2**32 keep squares and sums of
    squares far from float32's limit (about 3.4e38, which a square reaches
    from about 1.8e19). Ordinary embeddings are left as they are (the
    scale is 1), so their distances do not depend on the other rows of the
    batch. Detached: distances are rescaled by a constant.

    Parameters
    ----------
    *tensors : torch.Tensor

    dim : int or None, default=None
        One scale per slice along the other axes (keeping ``dim``), or one
        for all values.

    Returns
    -------
    scale : torch.Tensor

    Examples
    --------
    >>> import torch
    >>> from skmeta.metric._base import power_of_two_scale
    >>> power_of_two_scale(torch.tensor([3e20, -5.0])) == 2.0 ** 37
    tensor(True)
    >>> power_of_two_scale(torch.tensor([1e6]))
    tensor(1.)
    """
    if dim is None:
        largest = torch.stack([t.detach().abs().amax() if t.numel() else t.new_zeros(()) for t in tensors]).amax()
    else:
        (tensor,) = tensors
        largest = tensor.detach().abs().amax(dim, keepdim=True)
    _, exponent = torch.frexp(largest)
    return torch.ldexp(torch.ones_like(largest), (exponent - 32).clamp(min=0))


def normalize_rows(z):
    """Rows of ``z`` at unit Euclidean norm, as ``F.normalize(z, dim=1)``,
    without overflow: the norm of a row with values above about 1.8e19
    overflows float32 and the row would become zero.

    Examples
    --------
    >>> import torch
    >>> from skmeta.metric._base import normalize_rows
    >>> normalize_rows(torch.tensor([[3e30, 4e30], [3.0, 4.0]]))
    tensor([[0.6000, 0.8000],
            [0.6000, 0.8000]])
    """
    # One scale per row: a small row divided by another row's large scale
    # would fall below normalize's eps.
    return torch.nn.functional.normalize(z / power_of_two_scale(z, dim=1), dim=1)


class MetricMetaLearner(ClassNamePrefixFeaturesOutMixin, TransformerMixin, MetaClassifierMixin, MetaLearner):
    """Base of the metric-based meta-learners (not used directly).

    Subclasses set ``_task_state_names`` and implement ``_task_state`` and
    ``_logits``. ``predict_batch_size`` bounds the rows embedded and
    scored at once in prediction and ``transform``.
    """

    _task_state_names = ()
    _neutral_params = MetaLearner._neutral_params + ("predict_batch_size",)

    def __init__(self, module, *args, predict_batch_size=PREDICT_BATCH_SIZE, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.predict_batch_size = predict_batch_size

    @property
    def _task_attributes(self):
        return MetaLearner._task_attributes + tuple(self._task_state_names)

    def embed(self, X):
        """Embedding of a float tensor, through the meta-learned backbone."""
        return self.module_(X)

    @abstractmethod
    def _task_state(self, z_support, y_support, n_way):
        """Named tensors kept of an embedded support set, e.g. prototypes."""

    @abstractmethod
    def _logits(self, z_query, **state):
        """Scores of embedded queries against a task state, (n_query, n_way)."""

    def meta_loss(self, tasks, training):
        with torch.set_grad_enabled(training):
            embeddings = self._embed_tasks(tasks)
        device_type = embeddings[0][0].device.type
        # Only the backbone runs under bfloat16 autocast (precision="bfloat16"):
        # squared distances lose too many digits in bfloat16's 8-bit mantissa.
        with torch.set_grad_enabled(training), torch.autocast(device_type, enabled=False):
            losses, correct, total = [], 0, 0
            for task, (z_support, z_query) in zip(tasks, embeddings):
                state = self._task_state(z_support, task.y_support, task.n_way)
                logits = self._logits(z_query, **state)
                losses.append(self._episode_loss(task, z_support, z_query, logits, training))
                correct = correct + (logits.argmax(1) == task.y_query).sum()  # a tensor: no device read
                total += len(task.y_query)
        return torch.stack(losses).mean(), correct / total

    def _episode_loss(self, task, z_support, z_query, logits, training):
        """Loss of one embedded episode: the criterion on the query logits
        (softmax cross-entropy by default). Methods trained on another
        objective (same/different pairs, regression of relation scores)
        override it."""
        return self.get_loss(logits, task.y_query, training=training)

    def _embed_tasks(self, tasks):
        """Embed every support and query set of a meta-batch in one forward
        pass (one large batch is several times faster than many small ones,
        and batch norm sees the whole meta-batch)."""
        shapes = {task.X_support.shape[1:] for task in tasks}
        if len(shapes) > 1:  # tasks from different feature spaces
            return [(full_precision(self.embed(t.X_support)), full_precision(self.embed(t.X_query))) for t in tasks]
        parts = [X for task in tasks for X in (task.X_support, task.X_query)]
        z = full_precision(self.embed(torch.cat(parts)))
        chunks = torch.split(z, [len(X) for X in parts])
        return list(zip(chunks[0::2], chunks[1::2]))

    def _adapt(self, X, y):
        z = full_precision(self.embed(X))
        with torch.autocast(z.device.type, enabled=False):
            for name, value in self._task_state(z, y, len(self.classes_)).items():
                setattr(self, name, value)

    def _predict_scores(self, X):
        state = {name: getattr(self, name) for name in self._task_state_names}

        def scores(rows):
            z = self._embed_checked(rows)
            with torch.autocast(z.device.type, enabled=False):
                logits = full_precision(self._logits(z, **state))
            # -inf is a class of zero probability; NaN, +inf or a row without
            # a finite score would make softmax NaN.
            check_finite(logits, rows, self, "class scores", allow_neg_inf=True)
            return logits

        return predict_in_chunks(scores, X, self.predict_batch_size)

    def _embed_checked(self, X):
        z = full_precision(self.embed(X))
        check_finite(z, X, self, "embeddings")
        return z

    def transform(self, X):
        """Embed ``X`` with the meta-learned backbone.

        Needs only ``meta_fit`` (or a previous ``fit``), not a support set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features_out)
        """
        self._check_params()
        fitted = self.__sklearn_is_fitted__()
        if not (fitted or self._is_meta_fitted()):
            raise NotFittedError(
                f"This {type(self).__name__} instance is neither meta-fitted nor fitted yet. "
                "Call 'meta_fit' or 'fit' before using transform."
            )
        X, shape = self._flat_input(X)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        if not fitted:
            self._prepare_meta_state(shape)  # checks the feature count against meta_fit
        X = self._network_input(X)
        set_training(self, False)
        with torch.no_grad(), self._autocast():
            Z = predict_in_chunks(self._embed_checked, X, self.predict_batch_size)
        return Z.cpu().numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64" if self.precision == "float64" else "float32"]
        return tags

    @property
    def _n_features_out(self):
        shape = getattr(self, "meta_input_shape_", None) or (self.n_features_in_,)
        return infer_n_features_out(self.module_, shape)
