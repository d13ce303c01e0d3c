"""Meta-SGD (Li et al., 2017): MAML with meta-learned per-parameter step sizes."""

import torch
from torch import nn

from ..base import MetaClassifierMixin, MetaRegressorMixin
from ..modules import MLP
from .._prediction import PREDICT_BATCH_SIZE_DOC
from ._base import CLASSIFIER_DOC, REGRESSOR_DOC, ZERO_HEAD_DOC, OptimizationMetaLearner

__all__ = ["MetaSGDClassifier", "MetaSGDRegressor", "LearnedStepSizes"]


class LearnedStepSizes(nn.Module):
    """One learnable step size per element of every parameter of a network.

    Parameters
    ----------
    module : torch.nn.Module
        The network whose parameters get step sizes.

    init : float
        Initial value of every step size.

    Examples
    --------
    >>> import torch
    >>> from skmeta.optimization import LearnedStepSizes
    >>> rates = LearnedStepSizes(torch.nn.Linear(3, 2), init=0.1)
    >>> {name: tuple(rate.shape) for name, rate in rates.as_dict().items()}
    {'weight': (2, 3), 'bias': (2,)}
    """

    def __init__(self, module, init):
        super().__init__()
        # ParameterDict keys cannot hold dots; parameter names are dotted paths.
        # (pairs, not a dict, which ParameterDict would sort: keep the network's order.)
        self.rates = nn.ParameterDict(
            [(name.replace(".", "-"), nn.Parameter(torch.full_like(p.detach(), float(init))))
             for name, p in module.named_parameters()]
        )

    def as_dict(self):
        """Step sizes keyed by the network's parameter names."""
        return {key.replace("-", "."): rate for key, rate in self.rates.items()}


class _MetaSGD(OptimizationMetaLearner):
    """Meta-SGD's update: the inner step size of every weight is meta-learned
    with the initialisation (Li et al.'s "learning the optimiser")."""

    def __init__(
        self,
        module=MLP,
        *args,
        inner_steps=1,
        inner_lr=0.01,
        adapt_steps=None,
        first_order=False,
        **kwargs,
    ):
        super().__init__(module, *args, inner_steps=inner_steps, inner_lr=inner_lr, adapt_steps=adapt_steps, **kwargs)
        self.first_order = first_order

    def initialize_module(self):
        super().initialize_module()
        self.inner_lrs_ = LearnedStepSizes(self.module_, self.inner_lr)
        return self

    def _step_size(self, adapting, detach):
        rates = self.inner_lrs_.as_dict()
        return {name: rate.detach() for name, rate in rates.items()} if detach else rates


_DOC = """Meta-SGD {kind}: MAML with a meta-learned step size for every weight.

    Meta-SGD learns, with MAML's initial weights, a step size for each
    weight (a vector the size of the network, which sets both the direction
    and the size of the adaptation step). ``meta_fit`` trains both by
    differentiating the query loss through ``inner_steps`` adaptation steps;
    ``fit`` takes ``adapt_steps`` steps with the learned step sizes. Li et
    al. adapt with a single step.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The network; its output is the prediction. Arguments go in as
        ``module__<name>``; ``module__out_features`` defaults to {outputs}.

    inner_steps : int, default=1
        Gradient steps per task in ``meta_fit``.

    inner_lr : float, default=0.01
        Initial value of every learned step size.

    adapt_steps : int or None, default=None
        Gradient steps in ``fit``; None means ``inner_steps``.
        Steps beyond ``inner_steps``, which meta-training never took, are
        kept only where they do not raise the support loss (halved until
        they do not).

    first_order : bool, default=False
        Meta-gradient without second derivatives.

""" + ZERO_HEAD_DOC + """
    vectorize_tasks : {{"auto", True, False}}, default="auto"
        Adapt the tasks of a meta-batch together with ``torch.func.vmap``;
        "auto" does unless the network has convolutions.

""" + PREDICT_BATCH_SIZE_DOC + """
    optimizer, lr, max_epochs, batch_size, callbacks, warm_start, verbose, device
        Meta-training, as in :class:`skorch.NeuralNet` (Adam, ``lr=1e-3``).

    criterion : torch.nn.Module class, default={criterion}

    random_state : int, RandomState instance or None, default=None

    **kwargs
        Routed parameters: ``module__*``, ``optimizer__*``, ``callbacks__*``.

    Attributes
    ----------
    module_ : torch.nn.Module
        The meta-learned initial network (meta state).

    inner_lrs_ : LearnedStepSizes
        The meta-learned step sizes (meta state).

{task_attributes}
    adapted_params_ : dict of str to torch.Tensor
        The network's parameters after adaptation (task state).

    support_X_ : torch.Tensor or None
        The support set, kept when batch-norm layers need its statistics.

    See Also
    --------
    {see_also}

    References
    ----------
    Li, Z., Zhou, F., Chen, F. and Li, H. (2017). Meta-SGD: Learning to
    learn quickly for few-shot learning. arXiv:1707.09835.

    Examples
    --------
{example}
"""


class MetaSGDClassifier(MetaClassifierMixin, _MetaSGD):
    __doc__ = _DOC.format(
        **CLASSIFIER_DOC,
        see_also="MAMLClassifier : One step size for all weights.",
        example="""\
    >>> from sklearn.datasets import load_digits
    >>> from skmeta import MetaSGDClassifier
    >>> from skmeta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> tasks = EpisodeSampler(X[y < 6] / 16, y[y < 6], n_way=3, k_shot=1, n_query=5,
    ...                        n_tasks=20, random_state=0)
    >>> learner = MetaSGDClassifier(inner_lr=0.1, batch_size=4, max_epochs=1, verbose=0,
    ...                             random_state=0).meta_fit(tasks)
    >>> learner.fit(X[y >= 7][:15] / 16, y[y >= 7][:15]).predict(X[y >= 7][15:18] / 16).shape
    (3,)
""",
    )


class MetaSGDRegressor(MetaRegressorMixin, _MetaSGD):
    __doc__ = _DOC.format(
        **REGRESSOR_DOC,
        see_also="MAMLRegressor : One step size for all weights.\n"
        "    skmeta.datasets.SinusoidTasks : The sinusoid tasks of the paper.",
        example="""\
    >>> from skmeta import MetaSGDRegressor
    >>> from skmeta.datasets import SinusoidTasks, make_sinusoid
    >>> learner = MetaSGDRegressor(module__hidden_sizes=(40, 40), batch_size=10, max_epochs=2,
    ...                            verbose=0, random_state=0)
    >>> learner = learner.meta_fit(SinusoidTasks(n_tasks=100, k_shot=10, random_state=0))
    >>> X, y = make_sinusoid(30, random_state=1)
    >>> learner.fit(X[:10], y[:10]).predict(X[10:]).shape
    (20,)
""",
    )
