"""Model-Agnostic Meta-Learning (Finn et al., 2017), second and first order."""

from ..base import MetaClassifierMixin, MetaRegressorMixin
from ..modules import MLP
from .._prediction import PREDICT_BATCH_SIZE_DOC
from ._base import CLASSIFIER_DOC, REGRESSOR_DOC, ZERO_HEAD_DOC, OptimizationMetaLearner

__all__ = ["MAMLClassifier", "MAMLRegressor"]


class _MAML(OptimizationMetaLearner):
    """MAML's update: every parameter adapted with one step size."""

    _adaptation_params = ("adapt_steps", "adapt_lr")

    def __init__(
        self,
        module=MLP,
        *args,
        inner_steps=1,
        inner_lr=0.01,
        adapt_steps=None,
        adapt_lr=None,
        first_order=False,
        **kwargs,
    ):
        super().__init__(module, *args, inner_steps=inner_steps, inner_lr=inner_lr, adapt_steps=adapt_steps, **kwargs)
        self.adapt_lr = adapt_lr
        self.first_order = first_order

    def _step_size(self, adapting, detach):
        if adapting and self.adapt_lr is not None:
            return self.adapt_lr
        return self.inner_lr


_DOC = """MAML {kind}: a network meta-trained to {task} after a few gradient steps.

    Model-Agnostic Meta-Learning finds initial weights from which
    ``inner_steps`` steps of gradient descent on a task's support set give a
    low loss on its queries. ``meta_fit`` differentiates the query loss
    through those steps (second order; ``first_order=True`` drops the
    second derivatives, Finn et al.'s cheaper approximation). ``fit`` takes
    ``adapt_steps`` steps of size ``adapt_lr`` on the support set from the
    meta-learned weights, with the same inner loop; they default to the
    meta-training values and can be tuned on a meta-fitted learner with
    ``GridSearchCV(..., refit=False)``.

    The inner loop is functional (``torch.func``) and the tasks of a
    meta-batch are adapted together with ``vmap``; batch-norm layers use
    per-task statistics (see :mod:`skmeta.optimization`).

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The network; its output is the prediction. Arguments go in as
        ``module__<name>``; ``module__out_features`` defaults to {outputs}.
        :class:`~skmeta.modules.Conv4` with ``module__out_features`` for
        images.

    inner_steps : int, default=1
        Gradient steps per task in ``meta_fit``.

    inner_lr : float, default=0.01
        Their step size (Finn et al.: 0.01 for sinusoids, 0.4 for Omniglot).

    adapt_steps : int or None, default=None
        Gradient steps in ``fit``; None means ``inner_steps``. 0 predicts
        with the meta-learned weights.
        Steps beyond ``inner_steps``, which meta-training never took, are
        kept only where they do not raise the support loss (halved until
        they do not).

    adapt_lr : float or None, default=None
        Their step size; None means ``inner_lr``.

    first_order : bool, default=False
        Meta-gradient without second derivatives (first-order MAML).

""" + ZERO_HEAD_DOC + """
    vectorize_tasks : {{"auto", True, False}}, default="auto"
        Adapt the tasks of a meta-batch together with ``torch.func.vmap``
        (True) or one at a time (False). "auto" vectorises unless the
        network has convolutions, where a loop is faster on CPU. Results
        agree to float rounding.

""" + PREDICT_BATCH_SIZE_DOC + """
    optimizer, lr, max_epochs, batch_size, callbacks, warm_start, verbose, device
        Meta-training, as in :class:`skorch.NeuralNet`: Adam with
        ``lr=1e-3`` by default; ``batch_size`` is the number of tasks per
        meta-update.

    criterion : torch.nn.Module class, default={criterion}
        The loss, inner and outer.

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation and meta-training.

    **kwargs
        Routed parameters: ``module__*``, ``optimizer__*``, ``callbacks__*``.

    Attributes
    ----------
    module_ : torch.nn.Module
        The meta-learned network (meta state).

    meta_n_features_in_ : int
        Features per example seen by ``meta_fit`` (meta state).

    history_ : skorch.History
        Meta-training history: ``train_loss``{acc} and, with validation
        tasks, ``valid_loss``{valid_acc} per epoch.

{task_attributes}
    adapted_params_ : dict of str to torch.Tensor
        The network's parameters after adaptation (task state).

    support_X_ : torch.Tensor or None
        The support set, kept when batch-norm layers normalise queries
        with its statistics (task state).

    n_features_in_ : int
        Features seen by ``fit``.

    See Also
    --------
    {see_also}

    References
    ----------
    Finn, C., Abbeel, P. and Levine, S. (2017). Model-agnostic
    meta-learning for fast adaptation of deep networks. ICML.

    Kao, C.-H., Chiu, W.-C. and Chen, P.-Y. (2022). MAML is a noisy
    contrastive learner in classification. ICLR.

    Examples
    --------
{example}
"""

_CLASSIFIER_EXAMPLE = """\
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import cross_val_score
    >>> from skmeta import MAMLClassifier
    >>> from skmeta.model_selection import EpisodicSplit
    >>> from skmeta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> train, test = y < 6, y >= 6
    >>> tasks = EpisodeSampler(X[train], y[train], n_way=3, k_shot=1, n_query=5,
    ...                        n_tasks=40, random_state=0)
    >>> learner = MAMLClassifier(inner_lr=0.4, batch_size=4, max_epochs=2, verbose=0,
    ...                          random_state=0).meta_fit(tasks)
    >>> scores = cross_val_score(learner, X[test], y[test],
    ...                          cv=EpisodicSplit(n_way=3, k_shot=1, n_query=5, n_episodes=10, random_state=0))
    >>> scores.shape
    (10,)
"""

_REGRESSOR_EXAMPLE = """\
    >>> from skmeta import MAMLRegressor
    >>> from skmeta.datasets import SinusoidTasks
    >>> tasks = SinusoidTasks(n_tasks=100, k_shot=10, n_query=10, random_state=0)
    >>> learner = MAMLRegressor(module__hidden_sizes=(40, 40), batch_size=10, max_epochs=2,
    ...                         verbose=0, random_state=0).meta_fit(tasks)
    >>> task = next(iter(SinusoidTasks(n_tasks=1, k_shot=10, n_query=50, random_state=1)))
    >>> learner.set_params(adapt_steps=10).fit(task.X_support, task.y_support).predict(task.X_query).shape
    (50,)
"""


class MAMLClassifier(MetaClassifierMixin, _MAML):
    __doc__ = _DOC.format(
        **CLASSIFIER_DOC,
        task="classify the queries of a new task",
        see_also="MetaSGDClassifier : Learned per-parameter step sizes.\n"
        "    ANILClassifier : Adaptation of the last layer only.\n"
        "    ReptileClassifier : A first-order method without a query loss.",
        example=_CLASSIFIER_EXAMPLE,
    )


class MAMLRegressor(MetaRegressorMixin, _MAML):
    __doc__ = _DOC.format(
        **REGRESSOR_DOC,
        task="fit a new function",
        see_also="MetaSGDRegressor : Learned per-parameter step sizes.\n"
        "    skmeta.datasets.SinusoidTasks : The sinusoid tasks of the MAML paper.",
        example=_REGRESSOR_EXAMPLE,
    )
