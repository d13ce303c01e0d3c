"""ANIL, Almost No Inner Loop (Raghu et al., 2020): MAML adapting the head only."""

from ..base import MetaClassifierMixin, MetaRegressorMixin
from ._base import CLASSIFIER_DOC, REGRESSOR_DOC
from ._inner_loop import functional_forward, skeleton
from .maml import _MAML

__all__ = ["ANILClassifier", "ANILRegressor"]


class _ANIL(_MAML):
    """MAML whose inner loop changes only the last layer: the body's features
    are computed once per task and the steps run on the head alone."""

    def _support_objective(self, params, X_support, y_support, n_outputs):
        name = self._head_name()
        head = self.module_.get_submodule(name)
        prefix = name + "."
        features = self._head_input(name, params, X_support)

        def loss(adapted):
            weights = {key[len(prefix):]: value for key, value in adapted.items()}
            return self._loss(functional_forward(head, weights, features), y_support, n_outputs)

        return loss, {key: value for key, value in params.items() if key.startswith(prefix)}

    def _head_input(self, name, params, X):
        """What the network feeds its head, from one forward pass."""
        seen = {}

        def record(module, args, output):
            seen["input"], seen["output"] = args[0], output

        # On this thread's skeleton, which the forward pass runs on: a hook
        # on the shared network would fire in other threads' passes too.
        handle = skeleton(self.module_).get_submodule(name).register_forward_hook(record)
        try:
            output = self._forward(params, X)
        finally:
            handle.remove()
        if seen.get("output") is not output:
            raise ValueError(
                f"ANIL adapts the head only, so the network's output must be its head's output; "
                f"{type(self.module_).__name__} transforms the output of {self._head_name()!r} further"
            )
        return seen["input"]


_DOC = """ANIL {kind}: MAML whose adaptation changes only the last layer.

    Raghu et al. found that MAML's adaptation barely changes the body of
    the network: the meta-learned features are reused and only the head
    adapts. ANIL keeps the body fixed in the inner loop (``meta_fit`` still
    meta-learns it through the query loss), so a task's features are
    computed once and every adaptation step is a step on a linear model:
    much cheaper, and about as accurate.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The network; its output is the prediction, and must be the output
        of its head. ``module__out_features`` defaults to {outputs}.

    head : str or None, default=None
        Name of the submodule adapted in the inner loop (as in
        ``module.named_modules()``); None means the last ``nn.Linear``.

    inner_steps, inner_lr, adapt_steps, adapt_lr, first_order, zero_head, vectorize_tasks, predict_batch_size
        As in :class:`MAML{kind_title}`, applied to the head.

    optimizer, lr, max_epochs, batch_size, callbacks, warm_start, verbose, device, criterion, random_state
        Meta-training, as in :class:`MAML{kind_title}`.

    **kwargs
        Routed parameters: ``module__*``, ``optimizer__*``, ``callbacks__*``.

    Attributes
    ----------
    module_ : torch.nn.Module
        The meta-learned network (meta state).

{task_attributes}
    adapted_params_ : dict of str to torch.Tensor
        The network's parameters after adaptation; only the head's differ
        from ``module_`` (task state).

    support_X_ : torch.Tensor or None
        The support set, kept when batch-norm layers need its statistics.

    See Also
    --------
    MAML{kind_title} : Adaptation of every layer.

    References
    ----------
    Raghu, A., Raghu, M., Bengio, S. and Vinyals, O. (2020). Rapid learning
    or feature reuse? Towards understanding the effectiveness of MAML. ICLR.

    Examples
    --------
{example}
"""


class ANILClassifier(MetaClassifierMixin, _ANIL):
    __doc__ = _DOC.format(
        **CLASSIFIER_DOC,
        example="""\
    >>> from sklearn.datasets import load_digits
    >>> from skmeta import ANILClassifier
    >>> from skmeta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> tasks = EpisodeSampler(X[y < 6] / 16, y[y < 6], n_way=3, k_shot=1, n_query=5,
    ...                        n_tasks=20, random_state=0)
    >>> learner = ANILClassifier(inner_lr=0.4, inner_steps=3, batch_size=4, max_epochs=1,
    ...                          verbose=0, random_state=0).meta_fit(tasks)
    >>> learner.fit(X[y >= 7][:15] / 16, y[y >= 7][:15]).predict(X[y >= 7][15:18] / 16).shape
    (3,)
""",
    )


class ANILRegressor(MetaRegressorMixin, _ANIL):
    __doc__ = _DOC.format(
        **REGRESSOR_DOC,
        example="""\
    >>> from skmeta import ANILRegressor
    >>> from skmeta.datasets import SinusoidTasks, make_sinusoid
    >>> learner = ANILRegressor(module__hidden_sizes=(40, 40), inner_steps=5, batch_size=10,
    ...                         max_epochs=2, verbose=0, random_state=0)
    >>> learner = learner.meta_fit(SinusoidTasks(n_tasks=100, k_shot=10, random_state=0))
    >>> X, y = make_sinusoid(30, random_state=1)
    >>> learner.fit(X[:10], y[:10]).predict(X[10:]).shape
    (20,)
""",
    )
