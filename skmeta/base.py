"""The contract every meta-learner keeps, on top of skorch.

Two levels of learning (see DESIGN.md):

- ``meta_fit(tasks, val_tasks=None)`` trains the meta-parameters across many
  tasks. It is skorch's training loop: a "batch" is a meta-batch of
  ``batch_size`` tasks, an epoch is one pass over the task collection, and
  history, callbacks, progress bar, checkpoints, device and warm start are
  skorch's own.
- ``fit(X, y)`` adapts to one support set and writes only task state;
  ``predict``, ``predict_proba``, ``score`` (and ``transform`` for embedding
  learners) answer queries.

A method subclasses :class:`MetaLearner` with :class:`MetaClassifierMixin` or
:class:`MetaRegressorMixin` and implements three hooks: ``meta_loss`` (the
loss of a meta-batch), ``_adapt`` (task state from a support set) and
``_predict_scores`` (logits or predictions for queries).
"""

import copy
from abc import ABCMeta, abstractmethod
import inspect
import itertools
import math
import warnings
from typing import NamedTuple

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin, _clone_parametrized
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch import NeuralNet
from skorch.callbacks import EpochTimer, PassthroughScoring, PrintLog, ProgressBar

from .tasks import Task

__all__ = [
    "MetaLearner",
    "MetaClassifierMixin",
    "MetaRegressorMixin",
    "EncodedTask",
    "NotMetaFittedWarning",
]


class NotMetaFittedWarning(UserWarning):
    """``fit`` adapts from an untrained initialisation: ``meta_fit`` was never called."""


class EncodedTask(NamedTuple):
    """A task as the hooks see it: float tensors on the learner's device and
    targets encoded (class codes ``0 .. n_way - 1`` for classification)."""

    X_support: torch.Tensor
    y_support: torch.Tensor
    X_query: torch.Tensor
    y_query: torch.Tensor
    n_way: int


class _TaskDataset(torch.utils.data.IterableDataset):
    """A task collection seen through torch's data API, so that skorch's
    ``get_iterator`` (a DataLoader) can cut it into meta-batches."""

    def __init__(self, tasks):
        self.tasks = tasks

    def __iter__(self):
        return iter(self.tasks)

    def __len__(self):
        return len(self.tasks)


def _as_float_tensor(X, device):
    if torch.is_tensor(X):
        return X.to(device=device, dtype=torch.float32)
    return torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)


class MetaLearner(NeuralNet, metaclass=ABCMeta):
    """Base class of all skmeta meta-learners (not used directly).

    Parameters
    ----------
    module : torch.nn.Module class or instance
        The backbone; an instance is an initialisation template that
        ``meta_fit`` copies. Its constructor arguments are set with
        ``module__<name>``; ``module__in_features`` is filled in from the
        data when the module takes it and it is not given.

    criterion, optimizer, lr, max_epochs, callbacks, warm_start, verbose, device
        As in :class:`skorch.NeuralNet`; they act in ``meta_fit``.

    batch_size : int, default=1
        Tasks per meta-batch (one meta-parameter update per meta-batch).

    precision : {"float32", "bfloat16"}, default="float32"
        Arithmetic of the network's forward passes, in ``meta_fit``,
        ``fit``, ``predict`` and ``transform``: "bfloat16" runs them under
        ``torch.autocast`` (weights, gradients and optimiser state stay
        float32, and methods keep their final scoring in float32). About
        twice as fast on CPUs with native bfloat16 (AVX-512 BF16, AMX) and
        on recent GPUs; slower elsewhere.

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation and the randomness of meta-training and
        adaptation; every call with an int gives the same result.

    **kwargs
        Routed parameters, the skorch way: ``module__*``, ``optimizer__*``,
        ``callbacks__*``, ``iterator_train__*``.
    """

    # Names of task state: what ``fit`` writes and a clone forgets. Methods
    # extend it with their own (``prototypes_``, ``fast_params_``, ...).
    _task_attributes = ("classes_", "n_features_in_", "feature_names_in_", "n_outputs_", "_y_was_1d")
    # Parameters read at adaptation time (changing them after ``meta_fit`` is
    # meaningful) or by neither stage; everything else is a meta-training
    # parameter, and ``fit`` warns when one changed since ``meta_fit``.
    _adaptation_params = ()
    _neutral_params = (
        "verbose", "callbacks", "warm_start", "device", "iterator_train", "iterator_valid",
        "dataset", "train_split", "predict_nonlinearity", "use_caching", "torch_load_kwargs",
        "max_epochs", "precision",
    )

    def __init__(
        self,
        module,
        *args,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=1e-3,
        batch_size=1,
        train_split=None,
        precision="float32",
        random_state=None,
        **kwargs,
    ):
        super().__init__(
            module,
            *args,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            batch_size=batch_size,
            train_split=train_split,
            **kwargs,
        )
        self.precision = precision
        self.random_state = random_state

    # ------------------------------------------------------------------
    # skorch components
    # ------------------------------------------------------------------
    @property
    def _default_callbacks(self):
        callbacks = [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("train_acc", PassthroughScoring(name="train_acc", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("valid_acc", PassthroughScoring(name="valid_acc")),
            ("print_log", PrintLog()),
        ]
        if self.verbose:
            callbacks.append(("progress_bar", ProgressBar(postfix_keys=["train_loss", "train_acc"])))
        return callbacks

    def initialize_module(self):
        kwargs = self.get_params_for("module")
        hint = getattr(self, "_input_shape_hint", None)
        if (
            hint is not None
            and "in_features" not in kwargs
            and not isinstance(self.module, torch.nn.Module)
            and "in_features" in inspect.signature(self.module).parameters
        ):
            kwargs["in_features"] = int(math.prod(hint))
        if isinstance(self.module, torch.nn.Module) and not kwargs:
            # A module instance is a template: meta-training must not write into it.
            self.module_ = copy.deepcopy(self.module)
        else:
            self.module_ = self.initialized_instance(self.module, kwargs)
        return self

    def get_dataset(self, X, y=None):
        return _TaskDataset(X)

    def get_split_datasets(self, X, y=None, **fit_params):
        # skorch's ``y`` slot carries the validation tasks: a meta-learner's
        # targets live inside its tasks.
        return self.get_dataset(X), (None if y is None else self.get_dataset(y))

    def get_iterator(self, dataset, training=False):
        prefix = "iterator_train" if training else "iterator_valid"
        if "collate_fn" not in self.get_params_for(prefix):
            setattr(self, prefix + "__collate_fn", self._collate_tasks)
            self._params_to_validate.discard(prefix + "__collate_fn")
        return super().get_iterator(dataset, training=training)

    def _collate_tasks(self, tasks):
        return [self._encode_task(task) for task in tasks]

    def _encode_task(self, task):
        if not isinstance(task, Task):
            raise TypeError(f"task collections must yield skmeta.tasks.Task, got {type(task).__name__}")
        if task.y_query is None:
            raise ValueError("meta-training tasks need query labels (Task.y_query is None)")
        device = self.device
        X_support = _as_float_tensor(task.X_support, device)
        X_query = _as_float_tensor(task.X_query, device)
        if X_support.shape[1:] != X_query.shape[1:]:
            raise ValueError(
                f"support and query features differ: {tuple(X_support.shape[1:])} "
                f"vs {tuple(X_query.shape[1:])}"
            )
        for name, X, y in (("support", X_support, task.y_support), ("query", X_query, task.y_query)):
            if len(X) != len(y):
                raise ValueError(f"task {name} has {len(X)} examples but {len(y)} labels")
            if len(X) == 0:
                raise ValueError(f"task {name} set is empty")
        y_support, y_query, n_way = self._encode_task_targets(task.y_support, task.y_query)
        return EncodedTask(X_support, y_support.to(device), X_query, y_query.to(device), n_way)

    # ------------------------------------------------------------------
    # meta level
    # ------------------------------------------------------------------
    def meta_fit(self, tasks, val_tasks=None):
        """Meta-train on a collection of tasks.

        Re-initialises the meta-parameters first unless ``warm_start`` is
        True and the learner was meta-fitted before.

        Parameters
        ----------
        tasks : iterable of :class:`~skmeta.tasks.Task`
            One pass is one epoch; ``max_epochs`` passes are made.

        val_tasks : iterable of Task, default=None
            Meta-validation tasks (classes unseen in ``tasks``), evaluated
            after each epoch into ``history`` as ``valid_loss`` and
            ``valid_acc``. Drawn once, so every epoch sees the same tasks.

        Returns
        -------
        self
        """
        return self._meta_fit(tasks, val_tasks, reset=not self.warm_start)

    def partial_meta_fit(self, tasks, val_tasks=None, epochs=None):
        """Continue meta-training where it stopped (``epochs`` passes,
        ``max_epochs`` by default)."""
        return self._meta_fit(tasks, val_tasks, reset=False, epochs=epochs)

    def _meta_fit(self, tasks, val_tasks, reset, epochs=None):
        tasks, first = self._peek_tasks(tasks)
        if val_tasks is not None:
            val_tasks = list(val_tasks)
        input_shape = tuple(np.shape(first.X_support)[1:])
        meta_fitted = self._is_meta_fitted()
        if self._fixed_n_features and meta_fitted and not reset and math.prod(input_shape) != self.meta_n_features_in_:
            raise ValueError(
                f"tasks have {math.prod(input_shape)} features, but {type(self).__name__} "
                f"was meta-fitted with {self.meta_n_features_in_} features"
            )
        with self._seeded():
            if reset or not meta_fitted:
                self._input_shape_hint = input_shape
                self.initialize()
                self.meta_input_shape_ = input_shape
                self.meta_n_features_in_ = math.prod(input_shape)
            self._forget_task()
            self.notify("on_train_begin", X=tasks, y=val_tasks)
            try:
                self.fit_loop(tasks, val_tasks, epochs=epochs)
            except KeyboardInterrupt:
                pass
            self.notify("on_train_end", X=tasks, y=val_tasks)
        self._set_training(False)
        self.meta_params_ = self._meta_param_snapshot()
        return self

    @staticmethod
    def _peek_tasks(tasks):
        if hasattr(tasks, "__len__") and len(tasks) == 0:
            raise ValueError("the task collection is empty")
        iterator = iter(tasks)
        try:
            first = next(iterator)
        except StopIteration:
            raise ValueError("the task collection is empty") from None
        if iterator is tasks:  # a one-shot iterator: keep what was peeked
            tasks = itertools.chain([first], iterator)
        if not isinstance(first, Task):
            raise TypeError(f"task collections must yield skmeta.tasks.Task, got {type(first).__name__}")
        return tasks, first

    def _autocast(self):
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'bfloat16', got {self.precision!r}")
        device_type = torch.device(self.device or "cpu").type
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        with self._autocast():
            loss, accuracy = self.meta_loss(batch, training=True)
        loss.backward()
        if accuracy is not None:
            self.history.record_batch("train_acc", float(accuracy))
        return {"loss": loss, "y_pred": None}

    def validation_step(self, batch, **fit_params):
        self._set_training(False)
        with self._autocast():
            loss, accuracy = self.meta_loss(batch, training=False)
        if accuracy is not None:
            self.history.record_batch("valid_acc", float(accuracy))
        return {"loss": loss.detach(), "y_pred": None}

    @abstractmethod
    def meta_loss(self, tasks, training):
        """Loss of a meta-batch.

        Parameters
        ----------
        tasks : list of EncodedTask
        training : bool
            False during meta-validation: no graph needs to be kept for
            the meta-parameters.

        Returns
        -------
        loss : scalar tensor
        accuracy : float or None
            Query accuracy over the meta-batch (None for regression).
        """

    # ------------------------------------------------------------------
    # task level
    # ------------------------------------------------------------------
    def fit(self, X, y):
        """Adapt to one task's support set.

        Writes only task state; the meta-parameters are left bit-identical.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Support examples, flattened or N-D.
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        self._forget_task()
        try:
            X, y = validate_data(
                self, X, y, allow_nd=True, dtype=np.float32, y_numeric=self._y_numeric
            )
            self._prepare_meta_state(X)
            self._warn_changed_meta_params()
            self._set_training(False)
            grad = torch.no_grad() if self._adapt_without_grad else torch.enable_grad()
            with grad, self._seeded(), self._autocast():
                self._fit_task(_as_float_tensor(X, self.device), y)
        except BaseException:
            self._forget_task()
            raise
        return self

    # Adaptation of metric learners needs no gradient; optimisation-based
    # learners turn this off.
    _adapt_without_grad = True

    # Learners whose meta-parameters do not depend on the number of features
    # (learners across datasets with different features) set this to False:
    # meta_fit and fit then take tasks of any width.
    _fixed_n_features = True

    def _prepare_meta_state(self, X):
        n_features = math.prod(X.shape[1:])
        if self._is_meta_fitted():
            if self._fixed_n_features and n_features != self.meta_n_features_in_:
                raise ValueError(
                    f"X has {n_features} features, but {type(self).__name__} was meta-fitted "
                    f"with {self.meta_n_features_in_} features"
                )
            return
        warnings.warn(
            f"{type(self).__name__} was never meta-fitted: fit adapts from an untrained "
            "initialisation. Call meta_fit(tasks) first.",
            NotMetaFittedWarning,
            stacklevel=3,
        )
        # Never meta-fitted: the untrained initialisation is task state,
        # rebuilt (deterministically from random_state) for every support set.
        self._input_shape_hint = tuple(X.shape[1:])
        with self._seeded():
            self._initialize_virtual_params()
            self._initialize_module()

    def _predict_input(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, allow_nd=True, dtype=np.float32)
        return _as_float_tensor(X, self.device)

    def _query_scores(self, X):
        X = self._predict_input(X)
        self._set_training(False)
        with torch.no_grad(), self._autocast():
            return self._predict_scores(X).float()

    @abstractmethod
    def _adapt(self, X, y):
        """Write task state from an encoded support set (tensors on device)."""

    @abstractmethod
    def _predict_scores(self, X):
        """Logits (classification) or predictions (regression) for queries."""

    # ------------------------------------------------------------------
    # state, cloning, parameters
    # ------------------------------------------------------------------
    def _get_param_names(self):
        # skorch treats every attribute without a trailing underscore as a
        # parameter; private bookkeeping (leading underscore) is not one.
        return [name for name in super()._get_param_names() if not name.startswith("_")]

    @property
    def partial_fit(self):
        # skorch's partial_fit trains on (X, y); for a meta-learner that is
        # neither adaptation (fit) nor meta-training (partial_meta_fit), so it
        # is hidden, the way sklearn's available_if hides a method.
        raise AttributeError(
            f"{type(self).__name__} has no partial_fit: fit adapts to a support set, "
            "partial_meta_fit continues meta-training"
        )

    def _is_meta_fitted(self):
        return hasattr(self, "meta_n_features_in_")

    def __sklearn_is_fitted__(self):
        # Fitted means adapted to a support set; meta-fitted alone is not.
        return hasattr(self, "n_features_in_")

    def _forget_task(self):
        for name in self._task_attributes:
            if name in self.__dict__:
                delattr(self, name)

    def __sklearn_clone__(self):
        if not self._is_meta_fitted():
            return _clone_parametrized(self)
        # A clone keeps a deep copy of what meta_fit learned and forgets the task.
        clone = copy.deepcopy(self)
        clone._forget_task()
        return clone

    def set_params(self, **kwargs):
        if not self._is_meta_fitted():
            return super().set_params(**kwargs)
        # skorch re-initialises the module when a module__* parameter changes;
        # on a meta-fitted learner that would discard what meta_fit learned.
        # The new value is stored and takes effect at the next meta_fit.
        initialized, self.initialized_ = self.initialized_, False
        try:
            super().set_params(**kwargs)
        finally:
            self.initialized_ = initialized
        return self

    def _meta_param_snapshot(self):
        skip = set(self._adaptation_params) | set(self._neutral_params)
        return {
            key: value
            for key, value in self.get_params(deep=False).items()
            if key not in skip and not key.startswith(("callbacks", "iterator_", "_"))
        }

    def _warn_changed_meta_params(self):
        before = getattr(self, "meta_params_", None)
        if before is None:
            return
        now = self._meta_param_snapshot()
        changed = sorted(
            key for key in set(before) | set(now) if not _same(before.get(key), now.get(key))
        )
        if changed:
            warnings.warn(
                f"{', '.join(changed)} changed after meta_fit; meta-training parameters take "
                "effect at the next meta_fit, not in fit",
                UserWarning,
                stacklevel=3,
            )

    def _seeded(self):
        """A private torch random stream for one call, seeded from random_state."""
        return _SeededRNG(self.random_state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.random_state is None
        return tags


def _same(a, b):
    if a is b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # objects without a boolean equality (arrays, tensors)
        return False


class _SeededRNG:
    """Fork torch's CPU random state, seed it, and restore it on exit, so that
    a learner's randomness depends on its own random_state and never leaks
    into (or reads from) the global stream."""

    def __init__(self, random_state):
        self.random_state = random_state

    def __enter__(self):
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self._fork = torch.random.fork_rng(devices=[])
        self._fork.__enter__()
        torch.random.default_generator.manual_seed(seed)
        return self

    def __exit__(self, *exc):
        return self._fork.__exit__(*exc)


class MetaClassifierMixin(ClassifierMixin):
    """Classification at both levels: label encoding per task, probabilities
    from logits, accuracy as score."""

    _y_numeric = False

    def _encode_task_targets(self, y_support, y_query):
        if torch.is_tensor(y_support) and not torch.is_floating_point(y_support):
            classes, support = torch.unique(y_support, return_inverse=True)
            y_query = torch.as_tensor(y_query)
            query = torch.searchsorted(classes, y_query)
            unseen = (query >= len(classes)) | (classes[query.clamp(max=len(classes) - 1)] != y_query)
            if unseen.any():
                raise ValueError(
                    f"query labels {torch.unique(y_query[unseen]).tolist()} are absent from the support set"
                )
            return support, query, len(classes)
        classes, support = np.unique(np.asarray(y_support), return_inverse=True)
        query = _encode_against(classes, np.asarray(y_query), "query labels")
        return torch.as_tensor(support), torch.as_tensor(query), len(classes)

    def _fit_task(self, X, y):
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        self._adapt(X, torch.as_tensor(codes, device=self.device))

    def predict_proba(self, X):
        """Class probabilities of queries, columns in the order of ``classes_``."""
        scores = self._query_scores(X)
        return torch.softmax(scores.float(), dim=1).cpu().numpy().astype(np.float64)

    def predict(self, X):
        """The most probable support class of each query."""
        scores = self._query_scores(X)
        return self.classes_[scores.argmax(dim=1).cpu().numpy()]

    def score(self, X, y, sample_weight=None):
        """Accuracy on queries; raises if a query label is absent from the support set."""
        check_is_fitted(self)
        _encode_against(self.classes_, np.asarray(y), "query labels")
        return super().score(X, y, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # An untrained (never meta-fitted) learner, as the estimator checks
        # build it, is not expected to score well.
        tags.classifier_tags.poor_score = True
        return tags


class MetaRegressorMixin(RegressorMixin):
    """Regression at both levels: float targets, predictions as returned."""

    _y_numeric = True

    @property
    def predict_proba(self):
        # skorch's NeuralNet defines predict_proba; a regressor has none, and
        # scikit-learn's checks call every prediction method they find.
        raise AttributeError(f"{type(self).__name__} is a regressor: it has no predict_proba")

    def _encode_task_targets(self, y_support, y_query):
        support = _as_float_tensor(y_support, "cpu")
        query = _as_float_tensor(y_query, "cpu")
        return support.reshape(len(support), -1), query.reshape(len(query), -1), 0

    def _fit_task(self, X, y):
        y = np.asarray(y, dtype=np.float32)
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        self._y_was_1d = y.ndim == 1
        self._adapt(X, torch.as_tensor(y.reshape(len(y), -1), device=self.device))

    def predict(self, X):
        """Predictions for queries."""
        predictions = self._query_scores(X).cpu().numpy().astype(np.float64)
        return predictions.ravel() if self._y_was_1d else predictions

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True
        return tags


def _encode_against(classes, y, what):
    """Codes of ``y`` in sorted ``classes``; ValueError naming labels not there."""
    codes = np.searchsorted(classes, y)
    codes_clipped = np.minimum(codes, len(classes) - 1)
    unseen = classes[codes_clipped] != y
    if np.any(unseen):
        raise ValueError(
            f"{what} {np.unique(y[unseen]).tolist()} are absent from the support set "
            f"(classes {classes.tolist()})"
        )
    return codes
