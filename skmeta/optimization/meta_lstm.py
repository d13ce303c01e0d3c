"""The meta-learner LSTM (Ravi and Larochelle, 2017): a learned update rule.

Gradient descent ``theta <- theta - lr * grad`` is the cell update of an
LSTM, ``c_t = f_t * c_{t-1} + i_t * (-grad_t)``, with the parameters as cell
state, a forget gate of 1 and an input gate of ``lr``. The meta-learner
LSTM learns the gates instead, coordinate by coordinate, from the loss, the
gradient, the parameter and the gates' previous values; its initial cell
state ``c_0`` is the learner's initialisation, meta-learned with it.
"""

import copy
import math
import numbers

import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_scalar
from torch import nn
from torch.func import functional_call

from ..base import MetaClassifierMixin, MetaRegressorMixin
from ..modules import MLP
from ._base import CLASSIFIER_DOC, REGRESSOR_DOC, ZERO_HEAD_DOC, OptimizationMetaLearner

__all__ = ["MetaLSTMClassifier", "MetaLSTMRegressor", "MetaLSTMUpdate", "LearnedOptimizer"]

# Gate features per coordinate: log and sign of the gradient, log and sign
# of the loss, the parameter, the gate's own previous value.
_N_FEATURES = 6
# A probability of 0 or 1 as a sigmoid's argument: sigmoid(+-30) rounds to
# exactly 1 and 0 in float32, so a gate set to 1 is the identity.
_SATURATED = 30.0


def _logit(probability):
    if probability >= 1:
        return _SATURATED
    if probability <= 0:
        return -_SATURATED
    return max(-_SATURATED, min(_SATURATED, math.log(probability / (1 - probability))))


def preprocess(x, p=10.0):
    """Andrychowicz et al.'s scaling of a gradient or loss into two features.

    ``(log(|x|) / p, sign(x))`` where ``|x| >= exp(-p)``, else
    ``(-1, exp(p) * x)``: magnitudes spanning many orders become features
    of order one, and the sign survives separately.

    Parameters
    ----------
    x : torch.Tensor

    p : float, default=10.0

    Returns
    -------
    features : torch.Tensor of shape ``x.shape + (2,)``

    Examples
    --------
    >>> import torch
    >>> from skmeta.optimization.meta_lstm import preprocess
    >>> preprocess(torch.tensor([-100.0, 1e-6]), p=10.0)
    tensor([[ 0.4605, -1.0000],
            [-1.0000,  0.0220]])
    """
    threshold = math.exp(-p)
    large = x.abs() >= threshold
    # The logarithm of a clamped value: where() differentiates both
    # branches, and log(0) would turn a zero gradient into NaN.
    log = torch.log(x.abs().clamp_min(threshold)) / p
    return torch.stack([torch.where(large, log, -1.0), torch.where(large, torch.sign(x), x / threshold)], -1)


class MetaLSTMUpdate(nn.Module):
    """The meta-learner LSTM's cell: one learned update step of a network.

    For every coordinate ``theta`` of every parameter, with gradient ``g``
    and the support loss ``L``::

        f = sigmoid(W_f . [pre(g), pre(L), theta, f_prev] + b_f)
        i = sigmoid(W_i . [pre(g), pre(L), theta, i_prev] + b_i)
        theta <- f * theta - i * g

    where ``pre`` is :func:`preprocess`. The same weights serve every
    coordinate, so the rule applies to a network of any shape.

    Parameters
    ----------
    input_init : float, default=0.01
        Initial input gate (sigmoid of its bias): the step size of the
        first updates.

    forget_init : float, default=0.99
        Initial forget gate; 1 keeps the parameters (gradient descent).

    init_scale : float, default=0.01
        Gate weights start uniform in ``[-init_scale, init_scale]``; with
        0 and ``forget_init=1`` the rule is gradient descent with step
        ``input_init`` (to float rounding of the input gate).

    p : float, default=10.0
        Preprocessing scale (:func:`preprocess`).

    Attributes
    ----------
    gate_weight : torch.nn.Parameter of shape (2, 6)
        Rows: forget gate, input gate; columns: the features above.

    gate_bias : torch.nn.Parameter of shape (2,)

    Examples
    --------
    >>> import torch
    >>> from skmeta.optimization import MetaLSTMUpdate
    >>> rule = MetaLSTMUpdate(input_init=0.5, forget_init=1.0, init_scale=0.0)
    >>> params, state = rule({"w": torch.tensor([1.0])}, {"w": torch.tensor([2.0])}, torch.tensor(1.0))
    >>> params["w"].detach()
    tensor([0.])
    """

    def __init__(self, input_init=0.01, forget_init=0.99, init_scale=0.01, p=10.0):
        super().__init__()
        self.input_init = input_init
        self.forget_init = forget_init
        self.init_scale = init_scale
        self.p = p
        self.gate_weight = nn.Parameter(torch.empty(2, _N_FEATURES))
        self.gate_bias = nn.Parameter(torch.empty(2))
        self.reset_parameters()

    def reset_parameters(self):
        """Gates back to their initial values (Ravi and Larochelle's
        initialisation: small weights, a forget gate near 1)."""
        with torch.no_grad():
            self.gate_weight.uniform_(-self.init_scale, self.init_scale)
            self.gate_bias.copy_(torch.tensor([_logit(self.forget_init), _logit(self.input_init)]))

    def forward(self, params, grads, loss, state=None):
        """One update of every parameter.

        Parameters
        ----------
        params, grads : dict of str to torch.Tensor

        loss : scalar torch.Tensor
            The loss whose gradients ``grads`` are, at ``params``.

        state : torch.Tensor or None
            The gates of the previous step (None at the first: zeros).

        Returns
        -------
        params : dict of str to torch.Tensor
        state : torch.Tensor of shape (n_coordinates, 2)
            Forget and input gates of every coordinate, parameters in the
            order of ``params``.
        """
        # All coordinates in one vector: a handful of tensor operations per
        # step instead of as many per parameter tensor.
        names = list(params)
        theta = torch.cat([params[name].reshape(-1) for name in names])
        g = torch.cat([grads[name].reshape(-1) for name in names])
        previous = theta.new_zeros(theta.shape + (2,)) if state is None else state
        # The loss is one number for all coordinates: its share of the gate
        # arguments is computed once.
        shared = preprocess(loss.reshape(()), self.p) @ self.gate_weight[:, 2:4].T + self.gate_bias
        features = torch.cat([preprocess(g, self.p), theta.unsqueeze(-1)], -1)
        gates = torch.sigmoid(features @ self.gate_weight[:, [0, 1, 4]].T + previous * self.gate_weight[:, 5] + shared)
        updated = gates[:, 0] * theta - gates[:, 1] * g
        pieces = torch.split(updated, [params[name].numel() for name in names])
        return {name: piece.reshape(params[name].shape) for name, piece in zip(names, pieces)}, gates

    def extra_repr(self):
        return f"input_init={self.input_init}, forget_init={self.forget_init}, p={self.p}"


class LearnedOptimizer(torch.optim.Optimizer):
    """A meta-learned update rule as a :class:`torch.optim.Optimizer`.

    Trains any network's parameters with a :class:`MetaLSTMUpdate`, the way
    Andrychowicz et al. use a learned optimiser: the rule is fixed (a copy
    of the one given), and its gates carry over from step to step. Like
    :class:`torch.optim.LBFGS`, ``step`` needs a closure returning the
    loss, which the rule reads.

    Parameters
    ----------
    params : iterable of torch.Tensor or of dict
        The parameters to train, as for any optimiser.

    update_rule : MetaLSTMUpdate
        Usually ``learner.update_rule_`` of a meta-fitted
        :class:`MetaLSTMRegressor` or :class:`MetaLSTMClassifier`, whose
        :meth:`~MetaLSTMRegressor.as_optimizer` builds this.

    Examples
    --------
    >>> import torch
    >>> from skmeta.optimization import LearnedOptimizer, MetaLSTMUpdate
    >>> w = torch.nn.Parameter(torch.tensor([3.0]))
    >>> optimizer = LearnedOptimizer([w], MetaLSTMUpdate(input_init=0.25, forget_init=1.0, init_scale=0.0))
    >>> def closure():
    ...     optimizer.zero_grad()
    ...     loss = (w ** 2).sum()
    ...     loss.backward()
    ...     return loss
    >>> for _ in range(3):
    ...     loss = optimizer.step(closure)
    >>> w.detach()
    tensor([0.3750])
    """

    def __init__(self, params, update_rule):
        if not isinstance(update_rule, MetaLSTMUpdate):
            raise TypeError(f"update_rule must be a MetaLSTMUpdate, got {type(update_rule).__name__}")
        super().__init__(params, defaults={})
        self.update_rule = copy.deepcopy(update_rule).requires_grad_(False)

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient.

        Parameters
        ----------
        closure : callable
            Clears the gradients, computes the loss, calls ``backward`` and
            returns the loss.

        Returns
        -------
        loss : torch.Tensor
        """
        if closure is None:
            raise ValueError("LearnedOptimizer.step needs a closure returning the loss: the update rule reads it")
        with torch.enable_grad():
            loss = closure()
        loss = loss.detach()
        for group in self.param_groups:
            for theta in group["params"]:
                if theta.grad is None:
                    continue
                state = self.state[theta]
                rule = self.update_rule.to(theta.device)
                new, state["gates"] = rule({"theta": theta}, {"theta": theta.grad}, loss.to(theta.device),
                                           state.get("gates"))
                theta.copy_(new["theta"])
        return loss


class _MetaLSTM(OptimizationMetaLearner):
    """The meta-learner LSTM: the family's inner loop with a learned update
    rule in place of gradient descent, meta-learned with the initialisation."""

    def __init__(
        self,
        module=MLP,
        *args,
        inner_steps=1,
        inner_lr=0.01,
        adapt_steps=None,
        forget_init=0.99,
        gate_init_scale=0.01,
        first_order=False,
        **kwargs,
    ):
        super().__init__(module, *args, inner_steps=inner_steps, inner_lr=inner_lr, adapt_steps=adapt_steps, **kwargs)
        self.forget_init = forget_init
        self.gate_init_scale = gate_init_scale
        self.first_order = first_order

    def initialize_module(self):
        super().initialize_module()
        # Checked here too: the rule's initialisation reads them, before
        # on_train_begin's checks.
        self._check_gate_params()
        self.update_rule_ = MetaLSTMUpdate(
            input_init=self.inner_lr, forget_init=self.forget_init, init_scale=self.gate_init_scale
        )
        return self

    def _step_size(self, adapting, detach):
        return {name: p.detach() if detach else p for name, p in self.update_rule_.named_parameters()}

    def _update_rule(self, step_size):
        def update(params, grads, loss, state):
            return functional_call(self.update_rule_, step_size, (params, grads, loss, state))

        return update

    def as_optimizer(self, params):
        """The meta-learned update rule as a :class:`torch.optim.Optimizer`.

        Parameters
        ----------
        params : iterable of torch.Tensor or of dict
            Parameters of any network (the rule is coordinate-wise).

        Returns
        -------
        optimizer : LearnedOptimizer
            Holds a copy of the rule: training with it never changes this
            learner.
        """
        if not self._is_meta_fitted():
            raise NotFittedError(f"{type(self).__name__} has no learned update rule yet; call meta_fit(tasks) first")
        return LearnedOptimizer(params, self.update_rule_)

    def _check_params(self):
        super()._check_params()
        self._check_gate_params()

    def _check_gate_params(self):
        check_scalar(self.inner_lr, "inner_lr", numbers.Real, min_val=0, max_val=1, include_boundaries="neither")
        check_scalar(self.forget_init, "forget_init", numbers.Real, min_val=0, max_val=1, include_boundaries="right")
        check_scalar(self.gate_init_scale, "gate_init_scale", numbers.Real, min_val=0)


_DOC = """Meta-learner LSTM {kind}: a learned update rule and initialisation.

    Ravi and Larochelle's meta-learner replaces the gradient step of MAML by
    an LSTM cell whose state is the network's parameters:
    ``theta_t = f_t * theta_{{t-1}} - i_t * grad_t``, with a forget gate
    ``f_t`` and an input gate ``i_t`` (a step size) computed for every
    weight from the preprocessed support loss and gradient (Andrychowicz et
    al.'s log and sign features, p = 10), the weight itself and the gate's
    previous value (:class:`~skmeta.optimization.MetaLSTMUpdate`). The
    gates' weights are shared by all coordinates, so the rule has 14
    parameters whatever the network. The initial cell state, the network's
    initialisation, is meta-learned with them.

    ``meta_fit`` runs ``inner_steps`` updates on each task's support set
    and differentiates the query loss through them (second order;
    ``first_order=True`` truncates, treating the gradients and losses fed
    to the rule as constants, as Ravi and Larochelle do). ``fit`` runs
    ``adapt_steps`` updates with the learned rule. With ``forget_init=1``
    and ``gate_init_scale=0`` the untrained rule is gradient descent with
    step ``inner_lr``, i.e. MAML. :meth:`as_optimizer` hands the learned
    rule to any network as a :class:`torch.optim.Optimizer`. Batch-norm
    layers use per-task statistics (see :mod:`skmeta.optimization`).

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The network; its output is the prediction. Arguments go in as
        ``module__<name>``; ``module__out_features`` defaults to {outputs}.

    inner_steps : int, default=1
        Updates per task in ``meta_fit``.

    inner_lr : float, default=0.01
        Initial input gate, the step size the rule starts from (in (0, 1);
        Ravi and Larochelle's input bias of -5 to -4 is about 0.01).

    adapt_steps : int or None, default=None
        Updates in ``fit``; None means ``inner_steps``.
        Steps beyond ``inner_steps``, which meta-training never took, are
        kept only where they do not raise the support loss (halved until
        they do not).

    forget_init : float, default=0.99
        Initial forget gate (Ravi and Larochelle's bias of 4 to 6); 1
        keeps the weights exactly, as gradient descent does.

    gate_init_scale : float, default=0.01
        The gates' weights start uniform in ``[-gate_init_scale,
        gate_init_scale]``; 0 starts from gates that are constants.

    first_order : bool, default=False
        Meta-gradient without differentiating the gradients and losses the
        rule reads (truncated back-propagation).

""" + ZERO_HEAD_DOC + """
    vectorize_tasks : {{"auto", True, False}}, default="auto"
        Adapt the tasks of a meta-batch together with ``torch.func.vmap``;
        "auto" does unless the network has convolutions.

    optimizer, lr, max_epochs, batch_size, callbacks, warm_start, verbose, device
        Meta-training, as in :class:`skorch.NeuralNet` (Adam, ``lr=1e-3``).

    criterion : torch.nn.Module class, default={criterion}

    random_state : int, RandomState instance or None, default=None

    **kwargs
        Routed parameters: ``module__*``, ``optimizer__*``, ``callbacks__*``.

    Attributes
    ----------
    module_ : torch.nn.Module
        The meta-learned initial network, the LSTM's initial cell state
        (meta state).

    update_rule_ : MetaLSTMUpdate
        The meta-learned gates (meta state).

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
    Ravi, S. and Larochelle, H. (2017). Optimization as a model for
    few-shot learning. ICLR.

    Andrychowicz, M., Denil, M., Gomez, S., Hoffman, M. W., Pfau, D.,
    Schaul, T., Shillingford, B. and de Freitas, N. (2016). Learning to
    learn by gradient descent by gradient descent. NeurIPS.

    Examples
    --------
{example}
"""


class MetaLSTMClassifier(MetaClassifierMixin, _MetaLSTM):
    __doc__ = _DOC.format(
        **CLASSIFIER_DOC,
        see_also="MAMLClassifier : Gradient descent with one step size.\n"
        "    MetaSGDClassifier : A learned step size per weight.",
        example="""\
    >>> from sklearn.datasets import load_digits
    >>> from skmeta import MetaLSTMClassifier
    >>> from skmeta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> tasks = EpisodeSampler(X[y < 6] / 16, y[y < 6], n_way=3, k_shot=1, n_query=5,
    ...                        n_tasks=20, random_state=0)
    >>> learner = MetaLSTMClassifier(inner_lr=0.3, inner_steps=2, batch_size=4, max_epochs=1,
    ...                              verbose=0, random_state=0).meta_fit(tasks)
    >>> learner.fit(X[y >= 7][:15] / 16, y[y >= 7][:15]).predict(X[y >= 7][15:18] / 16).shape
    (3,)
""",
    )


class MetaLSTMRegressor(MetaRegressorMixin, _MetaLSTM):
    __doc__ = _DOC.format(
        **REGRESSOR_DOC,
        see_also="MAMLRegressor : Gradient descent with one step size.\n"
        "    MetaSGDRegressor : A learned step size per weight.\n"
        "    LearnedOptimizer : The learned rule as a torch optimiser.",
        example="""\
    >>> import torch
    >>> from skmeta import MetaLSTMRegressor
    >>> from skmeta.datasets import SinusoidTasks, make_sinusoid
    >>> learner = MetaLSTMRegressor(module__hidden_sizes=(16,), inner_steps=2, batch_size=10,
    ...                             max_epochs=1, verbose=0, random_state=0)
    >>> learner = learner.meta_fit(SinusoidTasks(n_tasks=40, k_shot=10, random_state=0))
    >>> X, y = make_sinusoid(30, random_state=1)
    >>> learner.fit(X[:10], y[:10]).predict(X[10:]).shape
    (20,)
    >>> network = torch.nn.Linear(1, 1)
    >>> optimizer = learner.as_optimizer(network.parameters())
""",
    )
