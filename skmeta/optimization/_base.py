"""What every optimisation-based learner shares: a network adapted to each
task by a few gradient steps from meta-learned parameters.

``fit`` and ``meta_fit`` run the same inner loop (``_adapted``, on
:func:`~skmeta.optimization.inner_loop`): ``fit`` on one support set without
an outer graph, ``meta_fit`` on every task of a meta-batch, mapped with
``vmap``, with the query loss differentiated through it. A method is what it
adapts (``_support_objective``), with which step sizes (``_step_size``) and
how the meta-parameters move (``meta_loss``).
"""

import functools
import inspect
import numbers
from abc import abstractmethod

import numpy as np
import torch
from sklearn.utils import check_scalar
from torch import nn

from .._prediction import PREDICT_BATCH_SIZE, check_finite, predict_in_chunks
from ..base import MetaLearner
from ..modules import MLP, infer_n_features_out
from ._inner_loop import TaskBatchNorm, functional_forward, inner_loop, map_tasks, use_task_batch_norm

# What the classifier and regressor docstrings of every method of the family
# fill in the same way (each method file formats its own template with them).
CLASSIFIER_DOC = dict(
    kind="classifier",
    kind_title="Classifier",
    outputs="``n_way`` of the first meta-training task",
    criterion="CrossEntropyLoss",
    acc=", ``train_acc``",
    valid_acc=", ``valid_acc``",
    task_attributes=(
        "    classes_ : ndarray of shape (n_classes,)\n"
        "        Support classes of the task ``fit`` adapted to (task state); a\n"
        "        task with fewer classes than the network has outputs is scored\n"
        "        on the first ``n_classes`` outputs.\n"
    ),
)
REGRESSOR_DOC = dict(
    kind="regressor",
    kind_title="Regressor",
    outputs="the number of targets of the first meta-training task",
    criterion="MSELoss",
    acc="",
    valid_acc="",
    task_attributes=(
        "    n_outputs_ : int\n"
        "        Number of targets of the task ``fit`` adapted to (task state).\n"
    ),
)
# The parameters of the zeroing trick, documented the same way by every method.
ZERO_HEAD_DOC = """\
    zero_head : bool, default=False
        Start every adaptation from a zero output layer instead of a
        meta-learned one (Kao et al.'s zeroing trick): the head is zeroed
        and frozen and only the layers below it are meta-learned. For a
        classifier, a first step from zero gives each class the centred
        mean of its support features as weights, a prototype classifier
        that meta-training only has to refine (on Omniglot, 15 minutes of
        first-order MAML: 82.64% 5-way 1-shot against 78.26% with a
        meta-learned head; docs/optimization.md).

    head : str or None, default=None
        The output layer, as named in ``module.named_modules()``; None
        means the last ``nn.Linear``.
"""

__all__ = ["OptimizationMetaLearner"]


class OptimizationMetaLearner(MetaLearner):
    """Base of MAML, Meta-SGD, ANIL, Reptile and MetaLSTM (not used directly).

    The backbone's output is the prediction: class scores (its first
    ``n_classes`` outputs) or regression targets. When the backbone class
    takes ``out_features`` and ``module__out_features`` is not given, it is
    set to ``n_way`` of the first meta-training task (or to the number of
    targets); never meta-fitted, to what the support set of ``fit`` needs.
    """

    _task_attributes = MetaLearner._task_attributes + ("adapted_params_", "support_X_")
    # Whether a looped meta-batch may be backpropagated task by task (see
    # _meta_backward); False where meta_loss couples the tasks.
    _backward_per_task = True
    # Mapping tasks with vmap or a loop gives the same numbers (to float
    # rounding): a speed setting, read by neither stage's semantics.
    _neutral_params = MetaLearner._neutral_params + ("vectorize_tasks", "predict_batch_size")
    _adaptation_params = ("adapt_steps",)
    # torch.func.grad differentiates even under an outer no_grad (it is a
    # function transform), so fit adapts without building any graph through
    # the meta-parameters.
    _adapt_without_grad = True
    _min_inner_steps = 0

    def __init__(
        self,
        module=MLP,
        *args,
        inner_steps=1,
        inner_lr=0.01,
        adapt_steps=None,
        zero_head=False,
        head=None,
        vectorize_tasks="auto",
        predict_batch_size=PREDICT_BATCH_SIZE,
        **kwargs,
    ):
        kwargs.setdefault("criterion", nn.MSELoss if self._y_numeric else nn.CrossEntropyLoss)
        super().__init__(module, *args, **kwargs)
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.adapt_steps = adapt_steps
        self.zero_head = zero_head
        self.head = head
        self.vectorize_tasks = vectorize_tasks
        self.predict_batch_size = predict_batch_size

    # ------------------------------------------------------------------
    # what a method defines
    # ------------------------------------------------------------------
    @abstractmethod
    def _step_size(self, adapting, detach):
        """The inner step size: a float, a tensor per parameter name, or the
        parameters of the learned update rule that ``_update_rule`` applies."""

    def _update_rule(self, step_size):
        """A learned update in place of gradient descent (see
        :func:`~skmeta.optimization.inner_loop`'s ``update``); None means
        ``params - step_size * grads``."""
        return None

    def _first_order(self):
        return bool(self.first_order)

    def _support_objective(self, params, X_support, y_support, n_outputs):
        """``(loss, start)``: the support loss as a function of the adapted
        parameters, and where adaptation starts. All parameters by default."""

        def loss(adapted):
            return self._loss(self._forward(adapted, X_support), y_support, n_outputs)

        return loss, params

    # ------------------------------------------------------------------
    # the inner loop, written once
    # ------------------------------------------------------------------
    def _adapted(self, params, X_support, y_support, n_outputs, n_steps, lr, first_order, guard_from=None):
        """``params`` after ``n_steps`` of gradient descent (or of the
        method's update rule) on one support set; steps from ``guard_from``
        on may not raise the support loss (see :func:`inner_loop`)."""
        loss, start = self._support_objective(params, X_support, y_support, n_outputs)
        return {**params, **inner_loop(loss, start, lr, n_steps, first_order, update=self._update_rule(lr),
                                       guard_from=guard_from)}

    def _forward(self, params, X, reference=None):
        if not self._task_normalised():
            reference = None
        return functional_forward(self.module_, params, X, reference)

    def _loss(self, output, y, n_outputs):
        return self.criterion_(output[:, :n_outputs], y)

    def _n_correct(self, output, y, n_outputs):
        if self._y_numeric:
            return torch.zeros((), device=output.device)
        return (output[:, :n_outputs].argmax(1) == y).sum()

    def _query_loss(self, params, lr, n_steps, first_order, X_support, y_support, X_query, y_query, n_way):
        """Loss and correct count of one task's queries after adaptation."""
        n_outputs = self._task_outputs(n_way, y_support)
        adapted = self._adapted(params, X_support, y_support, n_outputs, n_steps, lr, first_order)
        output = self._forward(adapted, X_query, reference=X_support)
        return self._loss(output, y_query, n_outputs), self._n_correct(output, y_query, n_outputs)

    def meta_loss(self, tasks, training):
        self._check_meta_batch(tasks)
        params = self._meta_parameters(detach=not training)
        lr = self._step_size(adapting=False, detach=not training)
        # Without an outer graph the second-order term has nothing to act on.
        first_order = self._first_order() or not training
        task_fn = functools.partial(self._query_loss, params, lr, self.inner_steps, first_order)
        losses, n_correct = self._map_tasks(task_fn, tasks)
        return losses.mean(), self._accuracy(n_correct, tasks)

    def _meta_backward(self, tasks):
        if not self._backward_per_task or len(tasks) < 2 or self._vectorize():
            return super()._meta_backward(tasks)
        # Looping over tasks anyway: backpropagate each task's query loss as
        # soon as it is computed, as hand-written MAML loops do, so that one
        # task's graph (its inner steps, with their second-order terms) is
        # alive at a time instead of the whole meta-batch's. The loss is the
        # tasks' mean, so the accumulated meta-gradient is the same.
        self._check_meta_batch(tasks)
        total, n_correct = 0.0, 0.0
        for task in tasks:
            with self._autocast():
                loss, accuracy = self.meta_loss([task], training=True)
            (loss / len(tasks)).backward()
            total = total + loss.detach()
            if accuracy is not None:
                n_correct += accuracy * len(task.y_query)
        accuracy = None if self._y_numeric else n_correct / sum(len(task.y_query) for task in tasks)
        return total / len(tasks), accuracy

    def _accuracy(self, n_correct, tasks):
        if self._y_numeric:
            return None
        return n_correct.sum() / sum(len(task.y_query) for task in tasks)

    def _map_tasks(self, task_fn, tasks):
        vectorize = self._vectorize()
        try:
            return map_tasks(task_fn, tasks, vectorize)
        except RuntimeError as error:
            if not vectorize:
                raise
            raise RuntimeError(
                f"{type(self).__name__} could not batch the tasks of a meta-batch with torch.func.vmap "
                f"({error}); vectorize_tasks=False adapts them one at a time"
            ) from error

    def _vectorize(self):
        if self.vectorize_tasks == "auto":
            # Per-task fast weights turn a batched convolution into a grouped
            # one: 1.4x slower than a loop over tasks on CPU (Conv-4, 5-way
            # 1-shot 15-query, meta-batch 8; no gain with 1 query), and vmap
            # cannot batch Conv4's channels-last layout. Dense layers gain
            # about 10x (sinusoid MLP, meta-batch 25).
            return not any(isinstance(m, nn.modules.conv._ConvNd) for m in self.module_.modules())
        return bool(self.vectorize_tasks)

    # ------------------------------------------------------------------
    # task level
    # ------------------------------------------------------------------
    def fit(self, X, y):
        if not self._is_meta_fitted():
            # The untrained initialisation gets a head the size this
            # support set needs.
            self.out_features_ = self._count_outputs(y)
        return super().fit(X, y)

    fit.__doc__ = MetaLearner.fit.__doc__

    def _adapt(self, X, y):
        n_outputs = self._support_outputs()
        self._check_head(n_outputs, "the support set")
        params = self._meta_parameters(detach=True)
        lr = self._step_size(adapting=True, detach=True)
        n_steps = self.inner_steps if self.adapt_steps is None else self.adapt_steps
        # Steps beyond those meta-trained are guarded: the learned step
        # (Meta-SGD's rates, the LSTM's rule) is sized for inner_steps steps.
        adapted = self._adapted(params, X, y, n_outputs, n_steps, lr, first_order=True, guard_from=self.inner_steps)
        self.adapted_params_ = {name: value.detach() for name, value in adapted.items()}
        self.support_X_ = X if self._task_normalised() else None

    def _predict_scores(self, X):
        n_outputs = self._support_outputs()

        def scores(rows):
            # Each chunk is normalised by the support set (support_X_), never
            # by the other queries, so chunking does not change predictions.
            output = self._forward(self.adapted_params_, rows, reference=self.support_X_)[:, :n_outputs]
            check_finite(output, rows, self, "outputs")
            return output

        return predict_in_chunks(scores, X, self.predict_batch_size)

    def _support_outputs(self):
        return self.n_outputs_ if self._y_numeric else len(self.classes_)

    # ------------------------------------------------------------------
    # components and checks
    # ------------------------------------------------------------------
    def initialize_module(self):
        super().initialize_module()
        use_task_batch_norm(self.module_)
        if self.zero_head:
            self._check_zero_head()
            # Kao et al.'s zeroing trick: the head starts every adaptation at
            # zero, so it is zero and frozen in the meta-learned network (the
            # optimiser skips parameters without gradients), and the body
            # alone is meta-learned.
            with torch.no_grad():
                for p in self.module_.get_submodule(self._head_name()).parameters():
                    p.zero_()
                    p.requires_grad_(False)
        return self

    def _check_zero_head(self):
        if self.zero_head not in (True, False):
            raise ValueError(f"zero_head must be True or False, got {self.zero_head!r}")

    def _head_name(self):
        """The output layer: ``head``, or the last ``nn.Linear``."""
        if self.head is not None:
            try:
                module = self.module_.get_submodule(self.head)
            except AttributeError:
                module = None
            if module is None or not any(True for _ in module.parameters()):
                raise ValueError(f"head={self.head!r} is not a submodule with parameters of {type(self.module_).__name__}")
            return self.head
        linear = [name for name, m in self.module_.named_modules() if isinstance(m, nn.Linear)]
        if not linear:
            raise ValueError(f"{type(self.module_).__name__} has no nn.Linear layer to serve as head; name the head with head=")
        return linear[-1]

    def get_params_for(self, prefix):
        params = super().get_params_for(prefix)
        hint = getattr(self, "out_features_", None)
        if (
            prefix == "module"
            and hint is not None
            and "out_features" not in params
            and not isinstance(self.module, nn.Module)
            and "out_features" in inspect.signature(self.module).parameters
        ):
            params["out_features"] = hint
        return params

    def _prepare_meta_fit(self, tasks, first, continues):
        if not continues:
            self.out_features_ = self._count_outputs(first.y_support)

    def _count_outputs(self, y):
        try:
            y = y.cpu().numpy() if torch.is_tensor(y) else np.asarray(y)
            if self._y_numeric:
                return 1 if y.ndim < 2 else int(y.shape[1])
            return len(np.unique(y))
        except (TypeError, ValueError):  # fit's validation names the problem
            return None

    def _task_outputs(self, n_way, y_support):
        return int(y_support.shape[-1]) if self._y_numeric else n_way

    def _meta_parameters(self, detach):
        return {name: p.detach() if detach else p for name, p in self.module_.named_parameters()}

    def _task_normalised(self):
        return any(isinstance(m, TaskBatchNorm) for m in self.module_.modules())

    def _n_head_outputs(self):
        shape = getattr(self, "meta_input_shape_", None) or self.input_shape_
        return infer_n_features_out(self.module_, shape)

    def _check_head(self, n_outputs, where):
        n_head = self._n_head_outputs()
        what = "targets" if self._y_numeric else "classes"
        # A classifier scores a task with fewer classes than its head on the
        # head's first outputs, the way a 5-way learner meets a 3-way task.
        if n_outputs > n_head or (self._y_numeric and n_outputs != n_head):
            raise ValueError(
                f"{where} has {n_outputs} {what}, but the network of {type(self).__name__} has "
                f"{n_head} outputs; meta-fit with module__out_features={n_outputs}"
            )

    def _check_meta_batch(self, tasks):
        for task in tasks:
            self._check_head(self._task_outputs(task.n_way, task.y_support), "a meta-training task")

    def _check_params(self):
        super()._check_params()
        check_scalar(self.inner_steps, "inner_steps", numbers.Integral, min_val=self._min_inner_steps)
        check_scalar(self.inner_lr, "inner_lr", numbers.Real, min_val=0, include_boundaries="neither")
        if self.adapt_steps is not None:
            check_scalar(self.adapt_steps, "adapt_steps", numbers.Integral, min_val=0)
        if getattr(self, "adapt_lr", None) is not None:
            check_scalar(self.adapt_lr, "adapt_lr", numbers.Real, min_val=0, include_boundaries="neither")
        self._check_zero_head()
        if self.vectorize_tasks not in ("auto", True, False):
            raise ValueError(f"vectorize_tasks must be 'auto', True or False, got {self.vectorize_tasks!r}")
