"""Reptile (Nichol et al., 2018): move the initialisation toward adapted weights."""

import torch

from ..base import MetaClassifierMixin, MetaRegressorMixin
from ..modules import MLP
from ._base import CLASSIFIER_DOC, REGRESSOR_DOC, OptimizationMetaLearner

__all__ = ["ReptileClassifier", "ReptileRegressor"]


class _Reptile(OptimizationMetaLearner):
    """Reptile's update: theta <- theta + lr * mean_tasks(phi - theta), where
    phi are the weights after ``inner_steps`` SGD steps on a task."""

    _adaptation_params = ("adapt_steps", "adapt_lr")
    _min_inner_steps = 1

    def __init__(self, module=MLP, *args, inner_steps=5, inner_lr=0.02, adapt_steps=None, adapt_lr=None, **kwargs):
        # Reptile's outer update is an interpolation, i.e. SGD on the
        # direction (theta - phi) with the meta step size as learning rate.
        kwargs.setdefault("optimizer", torch.optim.SGD)
        kwargs.setdefault("lr", 0.1)
        super().__init__(module, *args, inner_steps=inner_steps, inner_lr=inner_lr, adapt_steps=adapt_steps, **kwargs)
        self.adapt_lr = adapt_lr

    def _step_size(self, adapting, detach):
        if adapting and self.adapt_lr is not None:
            return self.adapt_lr
        return self.inner_lr

    # Reptile's surrogate loss couples the tasks through their mean adapted weights.
    _backward_per_task = False

    def _first_order(self):
        return True

    def meta_loss(self, tasks, training):
        if not training:  # meta-validation: query loss after adapting on the support set, as fit does
            return super().meta_loss(tasks, training)
        self._check_meta_batch(tasks)
        params = self._meta_parameters(detach=True)
        adapted, losses, n_correct = self._map_tasks(lambda *task: self._adapt_whole_task(params, *task), tasks)
        # A surrogate whose value is the tasks' loss after adaptation and
        # whose gradient is Reptile's direction theta - mean(phi), so that
        # skorch's backward, gradient callbacks and optimizer step apply
        # Reptile's update unchanged.
        direction = sum(
            (p * (p.detach() - adapted[name].mean(0))).sum() for name, p in self.module_.named_parameters()
        )
        loss = losses.mean() + direction - direction.detach()
        n_examples = sum(len(task.y_support) + len(task.y_query) for task in tasks)
        return loss, None if self._y_numeric else n_correct.sum() / n_examples

    def _adapt_whole_task(self, params, X_support, y_support, X_query, y_query, n_way):
        # All of a task's examples are its training data in Reptile (Nichol
        # et al. train on more shots than they evaluate with): the inner loop
        # runs on support and query together.
        X, y = torch.cat([X_support, X_query]), torch.cat([y_support, y_query])
        n_outputs = self._task_outputs(n_way, y_support)
        adapted = self._adapted(params, X, y, n_outputs, self.inner_steps, self.inner_lr, first_order=True)
        output = self._forward(adapted, X)
        return adapted, self._loss(output, y, n_outputs), self._n_correct(output, y, n_outputs)


_DOC = """Reptile {kind}: an initialisation moved toward each task's adapted weights.

    Reptile adapts the network to a task with ``inner_steps`` steps of
    gradient descent and moves the initialisation a fraction ``lr`` of the
    way toward the adapted weights, averaged over a meta-batch. It needs no
    second derivatives and no query loss: during ``meta_fit`` all of a
    task's examples (support and query) are adapted on, as Nichol et al.
    train on more shots than they evaluate with. ``fit`` adapts on the
    support set with ``adapt_steps`` steps of size ``adapt_lr``.

    ``train_loss`` in the history is the loss on a task's examples after
    the inner loop; ``valid_loss`` is the query loss after adapting on the
    support set, as ``fit`` and ``predict`` do.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The network; its output is the prediction. ``module__out_features``
        defaults to {outputs}.

    inner_steps : int, default=5
        Gradient steps per task in ``meta_fit`` (at least 1).

    inner_lr : float, default=0.02
        Their step size.

    adapt_steps : int or None, default=None
        Gradient steps in ``fit``; None means ``inner_steps``.
        Steps beyond ``inner_steps``, which meta-training never took, are
        kept only where they do not raise the support loss (halved until
        they do not).

    adapt_lr : float or None, default=None
        Their step size; None means ``inner_lr``.

    optimizer : torch.optim.Optimizer class, default=torch.optim.SGD
        Applies Reptile's direction; plain SGD is Reptile's interpolation.

    lr : float, default=0.1
        The meta step size (epsilon in the paper); anneal it with skorch's
        ``LRScheduler`` callback as Nichol et al. do.

    zero_head, head, vectorize_tasks, predict_batch_size, max_epochs, batch_size, callbacks, warm_start, verbose, device, criterion, random_state
        As in :class:`MAML{kind_title}`.

    **kwargs
        Routed parameters: ``module__*``, ``optimizer__*``, ``callbacks__*``.

    Attributes
    ----------
    module_ : torch.nn.Module
        The meta-learned initialisation (meta state).

{task_attributes}
    adapted_params_ : dict of str to torch.Tensor
        The network's parameters after adaptation (task state).

    support_X_ : torch.Tensor or None
        The support set, kept when batch-norm layers need its statistics.

    See Also
    --------
    MAML{kind_title} : Meta-gradient of the query loss through adaptation.

    References
    ----------
    Nichol, A., Achiam, J. and Schulman, J. (2018). On first-order
    meta-learning algorithms. arXiv:1803.02999.

    Examples
    --------
{example}
"""


class ReptileClassifier(MetaClassifierMixin, _Reptile):
    __doc__ = _DOC.format(
        **CLASSIFIER_DOC,
        example="""\
    >>> from sklearn.datasets import load_digits
    >>> from skmeta import ReptileClassifier
    >>> from skmeta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> tasks = EpisodeSampler(X[y < 6] / 16, y[y < 6], n_way=3, k_shot=1, n_query=5,
    ...                        n_tasks=20, random_state=0)
    >>> learner = ReptileClassifier(inner_lr=0.1, batch_size=4, max_epochs=1, verbose=0,
    ...                             random_state=0).meta_fit(tasks)
    >>> learner.fit(X[y >= 7][:15] / 16, y[y >= 7][:15]).predict(X[y >= 7][15:18] / 16).shape
    (3,)
""",
    )


class ReptileRegressor(MetaRegressorMixin, _Reptile):
    __doc__ = _DOC.format(
        **REGRESSOR_DOC,
        example="""\
    >>> from skmeta import ReptileRegressor
    >>> from skmeta.datasets import SinusoidTasks, make_sinusoid
    >>> learner = ReptileRegressor(module__hidden_sizes=(40, 40), batch_size=10, max_epochs=2,
    ...                            verbose=0, random_state=0)
    >>> learner = learner.meta_fit(SinusoidTasks(n_tasks=100, k_shot=10, random_state=0))
    >>> X, y = make_sinusoid(30, random_state=1)
    >>> learner.fit(X[:10], y[:10]).predict(X[10:]).shape
    (20,)
""",
    )
