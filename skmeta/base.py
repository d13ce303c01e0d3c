"""The contract every meta-learner keeps, on top of skorch.

Two levels of learning (docs/contract.md):

- ``meta_fit(tasks, val_tasks=None)`` trains the meta-parameters across many
  tasks. It is skorch's own ``partial_fit`` and ``fit_loop``: a "batch" is a
  meta-batch of ``batch_size`` tasks, an epoch is one pass over the task
  collection, and history, callbacks, progress bar, checkpoints, device and
  warm start are skorch's. A call that raises leaves the learner as it was.
- ``fit(X, y)`` adapts to one support set and writes only task state;
  ``predict``, ``predict_proba``, ``score`` (and ``transform`` for embedding
  learners) answer queries.

A method subclasses :class:`MetaLearner` with :class:`MetaClassifierMixin` or
:class:`MetaRegressorMixin` and implements three hooks: ``meta_loss`` (the
loss of a meta-batch), ``_adapt`` (task state from a support set) and
``_predict_scores`` (logits or predictions for queries). Task intake lives
in :mod:`skmeta.tasks`, torch helpers in ``skmeta.utils._torch``.
"""

import copy
import inspect
import math
import numbers
import warnings
from abc import ABCMeta, abstractmethod

import numpy as np
import scipy.sparse
import torch
from sklearn.base import ClassifierMixin, RegressorMixin, clone
from sklearn.utils import check_scalar
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch import NeuralNet
from skorch.callbacks import (
    BatchScoring,
    EarlyStopping,
    EpochScoring,
    EpochTimer,
    PassthroughScoring,
    PrintLog,
    ProgressBar,
)

from .tasks._episodes import Task
from .tasks._intake import EncodedTask, TaskDataset, TaskLoader, check_labels, check_task, peek_tasks
from .tasks._stream import TaskStream
from .utils._torch import (
    SeededRNG,
    all_finite,
    as_tensor,
    has_non_finite,
    owned_modules,
    set_training,
    torch_dtype,
)

__all__ = [
    "MetaLearner",
    "MetaClassifierMixin",
    "MetaRegressorMixin",
    "EncodedTask",
    "NotMetaFittedWarning",
    "MetaTrainingInterruptedWarning",
]

_PRECISIONS = ("float32", "bfloat16", "float64")


class NotMetaFittedWarning(UserWarning):
    """``fit`` adapts from an untrained initialisation: ``meta_fit`` was never called."""


class MetaTrainingInterruptedWarning(UserWarning):
    """``meta_fit`` was interrupted (Ctrl-C): the learner keeps the updates made so far."""


class MetaLearner(NeuralNet, metaclass=ABCMeta):
    """Base class of all skmeta meta-learners (not used directly).

    Parameters
    ----------
    module : torch.nn.Module class or instance
        The backbone; an instance is an initialisation template that
        ``meta_fit`` copies. Its constructor arguments are set with
        ``module__<name>``; ``module__in_features`` is filled in from
        ``input_shape`` when the module takes it and it is not given.

    criterion, optimizer, lr, max_epochs, callbacks, warm_start, verbose, device
        As in :class:`skorch.NeuralNet`; they act in ``meta_fit``.

    batch_size : int, default=1
        Tasks per meta-batch (one meta-parameter update per meta-batch).

    iterator_train, iterator_valid : class, default=TaskLoader
        skorch's iterators; ``skmeta.tasks._intake.TaskLoader`` cuts a task
        collection into meta-batches.

    precision : {"float32", "bfloat16", "float64"}, default="float32"
        Arithmetic of the network, in ``meta_fit``, ``fit``, ``predict`` and
        ``transform``. "bfloat16" runs forward passes under
        ``torch.autocast`` (weights, gradients and optimiser state stay
        float32, and methods keep their final scoring in float32): about
        twice as fast on CPUs with native bfloat16 (AVX-512 BF16, AMX) and
        on recent GPUs, slower elsewhere. "float64" keeps weights and
        inputs in double precision: slower, and the only setting whose
        predictions do not depend, to the last bit, on how many queries
        share a batch (float32 matrix kernels round differently for
        different batch sizes).

    input_shape : tuple of int or None, default=None
        Shape of one example (without the batch axis), e.g. ``(64,)`` or
        ``(1, 28, 28)``. None takes it from the first meta-training task.
        Set it to build the network before any data is seen, as skorch's
        ``InputShapeSetter`` does: ``initialize()`` then
        ``load_params(f_params=...)`` restores a saved meta-trained
        learner.

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation and the randomness of meta-training and
        adaptation; every call with an int gives the same result.

    **kwargs
        Routed parameters, the skorch way: ``module__*``, ``optimizer__*``,
        ``callbacks__*``, ``iterator_train__*``.
    """

    # Names of task state: what ``fit`` writes and a clone forgets. Methods
    # extend it with their own (``prototypes_``, ``adapted_params_``, ...).
    _task_attributes = ("classes_", "n_features_in_", "feature_names_in_", "n_outputs_", "y_was_1d_",
                        "task_input_shape_")
    # Parameters read at adaptation time (changing them after ``meta_fit`` is
    # meaningful) or by neither stage; everything else is a meta-training
    # parameter, and ``fit`` warns when one changed since ``meta_fit``.
    _adaptation_params = ()
    _neutral_params = (
        "verbose", "callbacks", "warm_start", "device", "iterator_train", "iterator_valid",
        "dataset", "train_split", "predict_nonlinearity", "use_caching", "torch_load_kwargs",
        "max_epochs", "precision", "input_shape", "compile",
    )
    # Adaptation of metric learners needs no gradient; optimisation-based
    # learners differentiate with torch.func, which works under no_grad too.
    _adapt_without_grad = True
    # Learners whose meta-parameters do not depend on the number of features
    # (learners across datasets with different features) set this to False:
    # meta_fit and fit then take tasks of any width.
    _fixed_n_features = True
    # Learners that take NaN as a missing value set this to True: tasks,
    # support and query sets may then hold NaN (never infinity).
    _allow_nan = False

    def __init__(
        self,
        module,
        *args,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=1e-3,
        batch_size=1,
        train_split=None,
        iterator_train=TaskLoader,
        iterator_valid=TaskLoader,
        precision="float32",
        input_shape=None,
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
            iterator_train=iterator_train,
            iterator_valid=iterator_valid,
            **kwargs,
        )
        self.precision = precision
        self.input_shape = input_shape
        self.random_state = random_state
        # Task state and the saved random streams may hold tensors on the
        # learner's device: skorch pickles these attributes as it pickles
        # its modules, so a learner fitted on a GPU loads where there is none.
        self.cuda_dependent_attributes_ = list(self.cuda_dependent_attributes_) + [
            name for name in (*self._task_attributes, "meta_rng_state_", "meta_tasks_state_")
            if name not in self.cuda_dependent_attributes_
        ]

    # ------------------------------------------------------------------
    # parameters: checked in one place, at the start of meta_fit and fit
    # ------------------------------------------------------------------
    def _check_params(self):
        """Validate the hyper-parameters; methods extend it with their own."""
        if self.precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {_PRECISIONS}, got {self.precision!r}")
        check_scalar(self.batch_size, "batch_size", numbers.Integral, min_val=1)
        check_scalar(self.max_epochs, "max_epochs", numbers.Integral, min_val=0)
        check_scalar(self.lr, "lr", numbers.Real, min_val=0)
        if self.input_shape is not None:
            shape = self.input_shape
            if not isinstance(shape, (tuple, list)) or not shape or not all(
                isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in shape
            ):
                raise ValueError(f"input_shape must be None or a tuple of positive integers, got {shape!r}")

    # ------------------------------------------------------------------
    # skorch components
    # ------------------------------------------------------------------
    @property
    def _default_callbacks(self):
        callbacks = [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("train_acc", PassthroughScoring(name="train_acc", on_train=True, lower_is_better=False)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("valid_acc", PassthroughScoring(name="valid_acc", lower_is_better=False)),
            ("print_log", PrintLog()),
        ]
        user = [cb[1] if isinstance(cb, tuple) else cb for cb in (self.callbacks or [])]
        if self.verbose and not any(isinstance(cb, ProgressBar) for cb in user):
            callbacks.append(("progress_bar", ProgressBar(postfix_keys=["train_loss", "train_acc"])))
        return callbacks

    def initialize_callbacks(self):
        super().initialize_callbacks()
        for name, callback in self.callbacks_:
            if isinstance(callback, (EpochScoring, BatchScoring)) and not isinstance(callback, PassthroughScoring):
                raise TypeError(
                    f"callback {name!r}: skorch's {type(callback).__name__} scores (X, y) examples with "
                    "predict, but meta-training iterates over tasks. Meta-validation records valid_loss "
                    "and valid_acc by itself (pass val_tasks); for another metric per epoch use "
                    "skmeta.callbacks.EpisodeScoring"
                )
        return self

    def initialize_module(self):
        kwargs = self.get_params_for("module")
        shape = self.input_shape if self.input_shape is not None else getattr(self, "input_shape_", None)
        takes_in_features = (
            not isinstance(self.module, torch.nn.Module)
            and "in_features" in inspect.signature(self.module).parameters
        )
        if takes_in_features and "in_features" not in kwargs:
            if shape is None and inspect.signature(self.module).parameters["in_features"].default is None:
                raise ValueError(
                    f"{getattr(self.module, '__name__', self.module)} needs in_features before data is seen: "
                    "pass input_shape=(n_features,) (or module__in_features), or call meta_fit"
                )
            if shape is not None:
                kwargs["in_features"] = int(math.prod(shape))
        if isinstance(self.module, torch.nn.Module) and not kwargs:
            # A module instance is a template: meta-training must not write into it.
            self.module_ = copy.deepcopy(self.module)
        else:
            self.module_ = self.initialized_instance(self.module, kwargs)
        if shape is None:  # a network that knows its input, e.g. Conv4(input_shape=...)
            shape = getattr(self.module_, "input_shape", None)
            if shape is None and isinstance(getattr(self.module_, "in_features", None), int):
                shape = (self.module_.in_features,)
        if shape is not None:
            self.input_shape_ = tuple(shape)
        return self

    def initialize(self):
        super().initialize()
        self._cast_modules()
        return self

    def initialize_optimizer(self, *args, **kwargs):
        if not any(True for _ in self.get_all_learnable_params()):
            # A network without parameters (nn.Identity: adaptation on raw
            # features) has nothing to meta-train; meta_fit says so.
            self.optimizer_ = None
            return self
        return super().initialize_optimizer(*args, **kwargs)

    def _cast_modules(self):
        dtype = torch_dtype(self.precision)
        for module in owned_modules(self).values():
            module.to(dtype)

    @property
    def _dtype(self):
        return torch_dtype(self.precision) if self.precision in _PRECISIONS else torch.float32

    def get_dataset(self, X, y=None):
        """A task collection as a ``TaskDataset`` of :mod:`skmeta.tasks` (what
        meta-training iterates over), examples as skorch's dataset (what
        ``forward`` runs the network on)."""
        if isinstance(X, (TaskStream, TaskDataset)) or (
            isinstance(X, (list, tuple)) and len(X) and isinstance(X[0], Task)
        ):
            return X if isinstance(X, TaskDataset) else TaskDataset(X, self._encode_task)
        return super().get_dataset(X, y)

    def get_split_datasets(self, X, y=None, **fit_params):
        # skorch's ``y`` slot carries the validation tasks: a meta-learner's
        # targets live inside its tasks.
        train = TaskDataset(X, self._encode_task)
        return train, (None if y is None else TaskDataset(y, self._encode_task))

    def _encode_task(self, task):
        X_support, X_query = check_task(task, numeric=self._y_numeric, allow_nan=self._allow_nan)
        n_features = math.prod(X_support.shape[1:])
        if self._fixed_n_features and getattr(self, "meta_n_features_in_", n_features) != n_features:
            raise ValueError(
                f"the task has {n_features} features per example, but {type(self).__name__}'s network "
                f"takes {self.meta_n_features_in_}"
            )
        shape = getattr(self, "meta_input_shape_", None)
        if self._fixed_n_features and shape is not None and X_support.shape[1:] != shape:
            # Flat examples of an image learner (or the reverse): the layout the network takes.
            X_support, X_query = X_support.reshape(-1, *shape), X_query.reshape(-1, *shape)
        y_support, y_query, n_way = self._encode_task_targets(task.y_support, task.y_query)
        device, dtype = self.device, self._dtype
        return EncodedTask(
            X_support.to(device=device, dtype=dtype), y_support.to(device),
            X_query.to(device=device, dtype=dtype), y_query.to(device), n_way,
        )

    def infer(self, x, **fit_params):
        """The network's output for a batch of examples (skorch's ``forward``):
        the embedding of metric learners, the predictions of the
        optimisation family's meta-learned network."""
        x = as_tensor(x, self.device, self._dtype)
        shape = getattr(self, "meta_input_shape_", None)
        if shape is not None and x.shape[1:] != shape and math.prod(x.shape[1:]) == math.prod(shape):
            x = x.reshape(len(x), *shape)
        with self._autocast():
            return self.module_(x, **fit_params)

    # ------------------------------------------------------------------
    # meta level
    # ------------------------------------------------------------------
    def meta_fit(self, tasks, val_tasks=None):
        """Meta-train on a collection of tasks.

        Re-initialises the meta-parameters first unless ``warm_start`` is
        True and the learner was meta-fitted before. A call that raises (a
        bad task, a non-finite loss) leaves the learner as it was before
        the call; Ctrl-C stops meta-training, keeps what was learned so far
        and warns (:class:`MetaTrainingInterruptedWarning`).

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
        self : object
            The meta-fitted learner.
        """
        return self._meta_fit(tasks, val_tasks, reset=not self.warm_start)

    def partial_meta_fit(self, tasks, val_tasks=None, epochs=None):
        """Continue meta-training where it stopped.

        The random stream of meta-training and, for a task collection of
        :mod:`skmeta.tasks` with the same parameters, its position continue
        from where the last epoch ended: a learner reloaded from a
        checkpoint and continued with ``partial_meta_fit`` ends as the
        uninterrupted run would have.

        Parameters
        ----------
        tasks : iterable of :class:`~skmeta.tasks.Task`
            Meta-training tasks.

        val_tasks : iterable of Task, default=None
            Meta-validation tasks, as in :meth:`meta_fit`.

        epochs : int, default=None
            Passes over ``tasks``; ``max_epochs`` by default.

        Returns
        -------
        self : object
            The meta-fitted learner.
        """
        if epochs is not None:
            check_scalar(epochs, "epochs", numbers.Integral, min_val=1)
        return self._meta_fit(tasks, val_tasks, reset=False, epochs=epochs)

    def _meta_fit(self, tasks, val_tasks, reset, epochs=None):
        self._check_params()
        tasks, first = peek_tasks(tasks)
        check_task(first, numeric=self._y_numeric, allow_nan=self._allow_nan)
        if val_tasks is not None:
            val_tasks, _ = peek_tasks(val_tasks)
            val_tasks = list(val_tasks)
            for index, task in enumerate(val_tasks):
                try:
                    check_task(task, numeric=self._y_numeric, allow_nan=self._allow_nan)
                except (TypeError, ValueError) as error:
                    raise type(error)(f"validation task {index}: {error}") from error
        input_shape = tuple(np.shape(first.X_support)[1:])
        continues = self._is_meta_fitted() and not reset
        if self._fixed_n_features and continues and math.prod(input_shape) != self.meta_n_features_in_:
            raise ValueError(
                f"tasks have {math.prod(input_shape)} features, but {type(self).__name__} "
                f"was meta-fitted with {self.meta_n_features_in_} features"
            )
        before = self._snapshot()
        try:
            self._prepare_meta_fit(tasks, first, continues)
            rng_state = getattr(self, "meta_rng_state_", None) if continues else None
            with SeededRNG(self.random_state, state=rng_state):
                if not continues:
                    self.input_shape_ = input_shape if self.input_shape is None else tuple(self.input_shape)
                    self.initialize()
                    self.meta_input_shape_ = self.input_shape_
                    self.meta_n_features_in_ = math.prod(self.input_shape_)
                    for name in ("meta_rng_state_", "meta_tasks_state_"):
                        self.__dict__.pop(name, None)
                elif hasattr(tasks, "set_state") and getattr(self, "meta_tasks_state_", None) is not None:
                    try:
                        tasks.set_state(self.meta_tasks_state_)
                    except ValueError:
                        pass  # another collection: it continues from its own position
                self._forget_task()
                if self.optimizer_ is None:
                    raise ValueError(f"{type(self).__name__}'s network has no parameters to meta-train")
                NeuralNet.partial_fit(self, tasks, val_tasks, epochs=epochs)
        except BaseException:
            # Transactional: whatever failed, the learner is as before the call.
            self._restore(before)
            raise
        set_training(self, False)
        self.meta_params_ = self._meta_param_snapshot()
        return self

    def _snapshot(self):
        """What ``_restore`` needs to put the learner back as it is now."""
        try:
            return {"dict": copy.deepcopy(self.__dict__)}
        except Exception:
            # Something that cannot be copied (a callback holding a lock or a
            # file, such as a TensorBoard writer): keep the objects, and copies
            # of every module's and optimiser's state and of the history.
            states = {
                name: copy.deepcopy(value.state_dict())
                for name, value in vars(self).items()
                if isinstance(value, (torch.nn.Module, torch.optim.Optimizer))
            }
            return {"shallow": dict(self.__dict__), "states": states,
                    "history": copy.deepcopy(self.__dict__.get("history_"))}

    def _restore(self, snapshot):
        if "dict" in snapshot:
            self.__dict__.clear()
            self.__dict__.update(snapshot["dict"])
            return
        self.__dict__.clear()
        self.__dict__.update(snapshot["shallow"])
        for name, state in snapshot["states"].items():
            getattr(self, name).load_state_dict(state)
        if snapshot["history"] is not None:
            self.__dict__["history_"] = snapshot["history"]

    def _prepare_meta_fit(self, tasks, first, continues):
        """Hook: read what the network's construction needs from the tasks
        before the network is built (e.g. the number of outputs); runs
        inside the transaction of ``meta_fit``."""

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt:
            self._note_interrupt()
            raise  # skorch's partial_fit ends training here, keeping what was learned

    def _note_interrupt(self):
        stopped_by = [
            name for name, cb in getattr(self, "callbacks_", [])
            if getattr(cb, "stopped_", False)
            or (isinstance(cb, EarlyStopping) and getattr(cb, "misses_", 0) >= cb.patience)
        ]
        if stopped_by or not len(self.history):
            return
        epoch, batch = len(self.history), len(self.history[-1, "batches"])
        self.history.record("interrupted", f"epoch {epoch}, batch {batch}")
        warnings.warn(
            f"meta-training was interrupted at epoch {epoch}, meta-batch {batch} (Ctrl-C); "
            f"{type(self).__name__} keeps the updates made so far",
            MetaTrainingInterruptedWarning,
            stacklevel=5,
        )

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        # Saved with the learner (and so in a Checkpoint's pickle), so that
        # partial_meta_fit continues the same random stream and episodes.
        self.meta_rng_state_ = torch.random.get_rng_state()
        tasks = getattr(dataset_train, "tasks", None)
        if hasattr(tasks, "get_state"):
            self.meta_tasks_state_ = tasks.get_state()
        return super().on_epoch_end(net, dataset_train=dataset_train, dataset_valid=dataset_valid, **kwargs)

    def _autocast(self):
        device_type = torch.device(self.device or "cpu").type
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")

    def train_step_single(self, batch, **fit_params):
        set_training(self, True)
        loss, accuracy = self._meta_backward(batch)
        grads = [p.grad for _, p in self.get_all_learnable_params()]
        # Checked in train_step, after the update, in the step's one read of
        # device values: each read stalls a GPU's queue until it drains.
        checks = {"loss": loss.detach(), "grads_finite": all_finite(grads), "accuracy": accuracy}
        return {"loss": loss, "y_pred": None, "checks": checks}

    def _meta_backward(self, tasks):
        """The meta-batch's loss and accuracy, the loss's gradient accumulated
        into the parameters. Methods whose tasks are independent may
        backpropagate task by task, keeping one task's graph alive at a time."""
        with self._autocast():
            loss, accuracy = self.meta_loss(tasks, training=True)
        loss.backward()
        return loss, accuracy

    def train_step(self, batch, **fit_params):
        step = super().train_step(batch, **fit_params)
        checks = step.pop("checks")
        # A finite gradient can still overflow the optimiser's state (Adam's
        # squared-gradient average) and leave non-finite weights; huge inputs
        # can overflow batch norm's running statistics.
        modules = owned_modules(self)
        state = [t for module in modules.values() for t in (*module.parameters(), *module.buffers())]
        accuracy = checks["accuracy"]
        values = [checks["loss"].float(), checks["grads_finite"], all_finite(state),
                  torch.as_tensor(0.0 if accuracy is None else accuracy, dtype=torch.float32)]
        device = values[0].device
        loss, grads_finite, state_finite, accuracy_value = torch.stack([v.to(device) for v in values]).tolist()
        # A non-finite value is reported by its first cause; the update it
        # made is undone with the rest of the call (meta_fit is transactional).
        if not math.isfinite(loss):
            self._raise_non_finite("loss")
        if not grads_finite:
            self._check_all_finite(((name, p.grad) for name, p in self.get_all_learnable_params()),
                                   "meta-gradient of {}")
        if not state_finite:
            self._check_all_finite(
                ((f"{module_name}{name}", value) for module_name, module in modules.items()
                 for name, value in (*module.named_parameters(), *module.named_buffers())),
                "{} after the update",
            )
        if accuracy is not None:
            self.history.record_batch("train_acc", accuracy_value)
        # skorch records the loss with .item(): a host copy makes that free.
        step["loss"] = torch.tensor(loss)
        return step

    def _check_all_finite(self, named_tensors, what):
        """``_check_finite`` over ``(name, tensor)`` pairs, raising for the
        first non-finite one; for the failure path, after ``all_finite``
        has flagged the group (it reads each tensor separately)."""
        for name, value in named_tensors:
            if value is not None and value.is_floating_point():
                self._check_finite(value, what.format(name))

    def _check_finite(self, value, what):
        if not torch.isfinite(value).all():
            self._raise_non_finite(what)

    def _raise_non_finite(self, what):
        epoch, batch = len(self.history), len(self.history[-1, "batches"])
        first = (batch - 1) * self.batch_size
        raise ValueError(
            f"meta-training produced a non-finite {what} at epoch {epoch}, meta-batch {batch} "
            f"(tasks {first} to {first + self.batch_size - 1} of the pass): features too large "
            "for the network's arithmetic, or a learning rate that diverges. The learner is left "
            "as it was before this call."
        )

    def validation_step(self, batch, **fit_params):
        set_training(self, False)
        with torch.no_grad(), self._autocast():
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
            The meta-batch.

        training : bool
            False during meta-validation: no graph needs to be kept for
            the meta-parameters.

        Returns
        -------
        loss : scalar tensor
            The meta-objective of the batch.

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
            Their labels (classification) or targets (regression).

        Returns
        -------
        self : object
            The learner, adapted to the support set.
        """
        self._forget_task()
        try:
            self._check_params()
            X, shape = self._flat_input(X)
            X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=self._y_numeric,
                                 ensure_all_finite="allow-nan" if self._allow_nan else True)
            check_labels(y, "y", len(X), numeric=self._y_numeric)
            self.task_input_shape_ = shape
            self._prepare_meta_state(shape)
            self._warn_changed_meta_params()
            set_training(self, False)
            grad = torch.no_grad() if self._adapt_without_grad else torch.enable_grad()
            with grad, SeededRNG(self.random_state), self._autocast():
                self._fit_task(self._network_input(X), y)
        except BaseException:
            self._forget_task()
            raise
        return self

    @staticmethod
    def _flat_input(X):
        """Examples as rows, ``(X, shape of one example)``: images may come
        flattened or N-D, and are checked as one row of features each."""
        if hasattr(X, "iloc") or hasattr(X, "dtypes") or scipy.sparse.issparse(X):
            # DataFrames keep their column names; validate_data rejects sparse input by name.
            return X, tuple(X.shape[1:])
        if torch.is_tensor(X):
            X = X.detach().cpu().numpy()
        X = np.asarray(X)
        if X.ndim > 2:
            return X.reshape(len(X), -1), X.shape[1:]
        return X, X.shape[1:]

    def _network_input(self, X):
        """Validated rows as the network's input tensor, in the shape it was built for."""
        X = as_tensor(X, self.device, self._dtype)
        if has_non_finite(X, self._allow_nan):
            raise ValueError(f"X has values beyond the range of {self.precision} arithmetic (about 3.4e38)")
        shape = getattr(self, "meta_input_shape_", None) or self.task_input_shape_
        return X.reshape(len(X), *shape) if X.dim() == 2 and len(shape) > 1 else X

    def _prepare_meta_state(self, shape):
        n_features = math.prod(shape)
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
        self.input_shape_ = tuple(shape) if self.input_shape is None else tuple(self.input_shape)
        with SeededRNG(self.random_state):
            self.initialize()

    def _predict_input(self, X):
        check_is_fitted(self)
        X, shape = self._flat_input(X)
        X = validate_data(self, X, reset=False, dtype=np.float64,
                          ensure_all_finite="allow-nan" if self._allow_nan else True)
        return self._network_input(X)

    def _query_scores(self, X):
        X = self._predict_input(X)
        set_training(self, False)
        with torch.no_grad(), self._autocast():
            return self._predict_scores(X).to(torch.float64)

    @abstractmethod
    def _adapt(self, X, y):
        """Write task state from an encoded support set (tensors on device)."""

    @abstractmethod
    def _predict_scores(self, X):
        """Logits (classification) or predictions (regression) for queries."""

    # ------------------------------------------------------------------
    # state, cloning, parameters
    # ------------------------------------------------------------------
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
        # Not delattr: skorch's __delattr__ would also drop the name from
        # cuda_dependent_attributes_, and the next fit's task state would
        # then pickle as raw device tensors (a GPU-fitted learner would no
        # longer load where there is no GPU).
        for name in self._task_attributes:
            self.__dict__.pop(name, None)

    def __sklearn_clone__(self):
        if not self._is_meta_fitted():
            params = self.get_params(deep=False)
            return type(self)(**{name: clone(value, safe=False) for name, value in params.items()})
        # A clone keeps a deep copy of what meta_fit learned and forgets the task.
        twin = copy.deepcopy(self)
        twin._forget_task()
        return twin

    def set_params(self, **params):
        if not self._is_meta_fitted():
            return super().set_params(**params)
        # skorch (1.x) rebuilds the module, criterion and optimiser when one
        # of their parameters changes on an initialised net; on a meta-fitted
        # learner that would discard what meta_fit learned. Their new values
        # are stored (get_params_for reads them) and take effect at the next
        # meta_fit.
        components = {prefix for prefix in ("module", "criterion")}
        deferred = {key: value for key, value in params.items() if key.split("__", 1)[0] in components and "__" in key}
        super().set_params(**{key: value for key, value in params.items() if key not in deferred})
        for key, value in deferred.items():
            setattr(self, key, value)
        return self

    def load_params(self, f_params=None, f_optimizer=None, f_criterion=None, f_history=None, checkpoint=None,
                    use_safetensors=False, **kwargs):
        """Load saved meta-parameters (skorch's :meth:`~skorch.NeuralNet.load_params`).

        The weights-only route to persistence: files written by
        ``save_params`` are read with ``torch.load(weights_only=True)``. A
        learner built with the same parameters and ``initialize()``-d loads
        them and is then meta-fitted: ``fit`` and ``predict`` give what the
        saved learner gave. Pass ``input_shape`` (or the module's size
        parameters) when the network cannot be built without data.

        Parameters
        ----------
        f_params, f_optimizer, f_criterion, f_history, checkpoint, use_safetensors, **kwargs
            As in :meth:`skorch.NeuralNet.load_params`.

        Returns
        -------
        None
        """
        super().load_params(f_params=f_params, f_optimizer=f_optimizer, f_criterion=f_criterion,
                            f_history=f_history, checkpoint=checkpoint, use_safetensors=use_safetensors,
                            **kwargs)
        loaded_weights = f_params is not None or checkpoint is not None or any(
            key.startswith("f_") for key in kwargs
        )
        if loaded_weights:
            shape = getattr(self, "input_shape_", None) or getattr(self.module_, "input_shape", None)
            if shape is None:
                raise ValueError(
                    f"{type(self).__name__} cannot tell the input shape of the loaded network; "
                    "build it with input_shape=... before initialize() and load_params"
                )
            self.input_shape_ = self.meta_input_shape_ = tuple(shape)
            self.meta_n_features_in_ = math.prod(shape)
            self.meta_params_ = self._meta_param_snapshot()
            self._forget_task()

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
                "effect at the next meta_fit, not in fit: this learner adapts with the "
                "meta-parameters learned before the change",
                UserWarning,
                stacklevel=3,
            )

    def _seeded(self):
        """A private torch random stream for one call, seeded from random_state."""
        return SeededRNG(self.random_state)

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


class MetaClassifierMixin(ClassifierMixin):
    """Classification at both levels: label encoding per task, probabilities
    from logits, accuracy as score."""

    _y_numeric = False

    def _encode_task_targets(self, y_support, y_query):
        if torch.is_tensor(y_support) and not torch.is_floating_point(y_support):
            classes, support = torch.unique(y_support.cpu(), return_inverse=True)
            y_query = torch.as_tensor(y_query).cpu()
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
        """Class probabilities of queries.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) or (n_queries, ...)
            Query examples.

        Returns
        -------
        proba : ndarray of shape (n_queries, n_classes)
            Float64 probabilities, columns in the order of ``classes_``;
            each row sums to 1.
        """
        scores = self._query_scores(X)
        return torch.softmax(scores, dim=1).cpu().numpy()

    def predict(self, X):
        """The most probable support class of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) or (n_queries, ...)
            Query examples.

        Returns
        -------
        y_pred : ndarray of shape (n_queries,)
            Labels from ``classes_``.
        """
        scores = self._query_scores(X)
        return self.classes_[scores.argmax(dim=1).cpu().numpy()]

    def score(self, X, y, sample_weight=None):
        """Accuracy on queries.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) or (n_queries, ...)
            Query examples.

        y : array-like of shape (n_queries,)
            Their labels; each must be a class of the support set.

        sample_weight : array-like of shape (n_queries,), default=None
            Weights of the queries.

        Returns
        -------
        score : float
            Mean accuracy.
        """
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
        support = as_tensor(y_support, "cpu", self._dtype)
        query = as_tensor(y_query, "cpu", self._dtype)
        return support.reshape(len(support), -1), query.reshape(len(query), -1), 0

    def _fit_task(self, X, y):
        y = np.asarray(y, dtype=np.float64)
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        self.y_was_1d_ = y.ndim == 1
        self._adapt(X, as_tensor(y.reshape(len(y), -1), self.device, self._dtype))

    def predict(self, X):
        """Predictions for queries.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) or (n_queries, ...)
            Query examples.

        Returns
        -------
        y_pred : ndarray of shape (n_queries,) or (n_queries, n_outputs)
            Float64 predictions, 1-D when the support targets were.
        """
        predictions = self._query_scores(X).cpu().numpy()
        return predictions.ravel() if self.y_was_1d_ else predictions

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True
        return tags


def _encode_against(classes, y, what):
    """Codes of ``y`` in sorted ``classes``; ValueError naming labels not there."""
    try:
        codes = np.searchsorted(classes, y)
    except TypeError:
        raise TypeError(f"{what} are not comparable with the support classes {classes.tolist()}") from None
    codes_clipped = np.minimum(codes, len(classes) - 1)
    unseen = classes[codes_clipped] != y
    if np.any(unseen):
        raise ValueError(
            f"{what} {np.unique(y[unseen]).tolist()} are absent from the support set "
            f"(classes {classes.tolist()})"
        )
    return codes
