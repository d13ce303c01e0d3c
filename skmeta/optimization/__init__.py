"""Optimisation-based meta-learners: a network adapted to each task by a few
gradient steps from meta-learned weights.

MAML (second and first order), Meta-SGD, ANIL, Reptile and the meta-learner
LSTM (a learned update rule), each as a classifier and a regressor. They share one functional inner loop
(:func:`inner_loop`, on ``torch.func.functional_call`` and ``grad``) that
adapts one support set in ``fit`` and, mapped over the tasks of a
meta-batch with ``vmap``, every task in ``meta_fit``. Batch-norm layers use
per-task statistics (:class:`TaskBatchNorm`). See docs/optimization.md.
"""

from ._inner_loop import TaskBatchNorm, functional_forward, inner_loop, map_tasks, use_task_batch_norm
from .anil import ANILClassifier, ANILRegressor
from .maml import MAMLClassifier, MAMLRegressor
from .meta_lstm import LearnedOptimizer, MetaLSTMClassifier, MetaLSTMRegressor, MetaLSTMUpdate
from .meta_sgd import LearnedStepSizes, MetaSGDClassifier, MetaSGDRegressor
from .reptile import ReptileClassifier, ReptileRegressor

__all__ = [
    "MAMLClassifier",
    "MAMLRegressor",
    "MetaSGDClassifier",
    "MetaSGDRegressor",
    "ANILClassifier",
    "ANILRegressor",
    "ReptileClassifier",
    "ReptileRegressor",
    "MetaLSTMClassifier",
    "MetaLSTMRegressor",
    "LearnedStepSizes",
    "MetaLSTMUpdate",
    "LearnedOptimizer",
    "TaskBatchNorm",
    "use_task_batch_norm",
    "functional_forward",
    "inner_loop",
    "map_tasks",
]
