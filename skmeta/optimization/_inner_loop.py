"""The functional inner loop shared by every optimisation-based meta-learner.

A network is a pure function of its parameters (``functional_call``), and
adaptation to a task is plain gradient descent on that function
(``torch.func.grad``): ``params <- params - lr * grad(support_loss)(params)``.
No module is copied per task. The same code adapts one support set in
``fit`` and the tasks of a meta-batch in ``meta_fit``, where it is mapped
over the tasks with ``torch.func.vmap`` (or a loop, see :func:`map_tasks`),
and where the outer ``backward`` differentiates through it (second order)
unless the inner gradients are detached (first order).

Batch normalisation uses the statistics of each task's own examples and
keeps no running averages, as MAML implementations do: :class:`TaskBatchNorm`
replaces every batch-norm layer of a backbone. The support set is normalised
with its own statistics. Queries are normalised with the statistics of the
support set they were adapted on (Bronskill et al.'s "MetaBN") rather than
with their own batch's (Finn et al.'s transductive choice), so a prediction
never depends on which other queries share its batch.

References
----------
Finn, C., Abbeel, P. and Levine, S. (2017). Model-agnostic meta-learning for
fast adaptation of deep networks. ICML.

Bronskill, J., Gordon, J., Requeima, J., Nowozin, S. and Turner, R. E.
(2020). TaskNorm: Rethinking batch normalization for meta-learning. ICML.
"""

import contextlib
import contextvars
import copy
import threading
import weakref

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from ..utils._torch import reference_rows, statistics_rows

__all__ = ["TaskBatchNorm", "use_task_batch_norm", "functional_forward", "inner_loop", "map_tasks"]

# Whether TaskBatchNorm may call torch's fused batch norm: not under vmap,
# nor where its second derivative will be taken (see TaskBatchNorm.forward).
_FUSED = contextvars.ContextVar("fused_batch_norm", default=True)


@contextlib.contextmanager
def _unfused():
    token = _FUSED.set(False)
    try:
        yield
    finally:
        _FUSED.reset(token)


class TaskBatchNorm(nn.Module):
    """Batch normalisation with per-task statistics and no running averages.

    Normalises over every axis but the channel axis (1), like
    :class:`torch.nn.BatchNorm1d` / ``2d`` / ``3d`` in training mode, with
    the mean and biased variance of the reference rows: the whole batch, or,
    inside :func:`functional_forward` with a reference set, its leading
    support rows. Train and eval mode behave the same.

    Parameters
    ----------
    num_features : int
        Channels (axis 1 of the input).

    eps : float, default=1e-5
        Added to the variance for numerical stability.

    affine : bool, default=True
        Learn a per-channel scale (``weight``) and shift (``bias``).

    Examples
    --------
    >>> import torch
    >>> from skmeta.optimization import TaskBatchNorm
    >>> out = TaskBatchNorm(3)(torch.randn(8, 3) * 5 + 2)
    >>> bool(out.mean(0).abs().max() < 1e-5)
    True
    """

    def __init__(self, num_features, eps=1e-5, affine=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, X):
        n_rows = statistics_rows()
        if n_rows is None and _FUSED.get():
            # torch's fused kernel when the batch is its own reference: on
            # CPU its statistics are much cheaper than var_mean's.
            return F.batch_norm(X, None, None, self.weight, self.bias, training=True, eps=self.eps)
        # The explicit formula otherwise. Under vmap, the second derivative
        # of F.batch_norm's batching rule is wrong (0.2 absolute error
        # against a per-task loop on a one-layer CNN, torch 2.13); outside
        # it, its second derivative is right but a slow composite, slower
        # than the formula's in a second-order Conv-4 MAML step; and it
        # cannot take statistics from the leading rows only.
        reference = X if n_rows is None else X[:n_rows]
        var, mean = torch.var_mean(reference, [0, *range(2, X.dim())], unbiased=False, keepdim=True)
        scale = torch.rsqrt(var + self.eps)
        shift = -mean * scale
        if self.weight is not None:
            shape = (1, -1) + (1,) * (X.dim() - 2)
            scale = scale * self.weight.reshape(shape)
            shift = shift * self.weight.reshape(shape) + self.bias.reshape(shape)
        return X * scale + shift

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}"


def use_task_batch_norm(module):
    """Replace, in place, every batch-norm layer of ``module`` by a
    :class:`TaskBatchNorm` with the same affine parameters.

    Running statistics are dropped: a meta-learner meets each task's
    distribution through its support set, not through averages over
    meta-training tasks.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    module : torch.nn.Module
        The same object, changed.

    Examples
    --------
    >>> from skmeta.modules import MLP
    >>> from skmeta.optimization import use_task_batch_norm
    >>> use_task_batch_norm(MLP(in_features=4, hidden_sizes=(8,), out_features=2, batch_norm=True)).layers[1]
    TaskBatchNorm(8, eps=1e-05, affine=True)
    """
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            replacement = TaskBatchNorm(child.num_features, eps=child.eps, affine=child.affine)
            if child.affine:
                with torch.no_grad():
                    replacement.weight.copy_(child.weight)
                    replacement.bias.copy_(child.bias)
            replacement.to(next(child.parameters(), torch.empty(0)).device)
            setattr(module, name, replacement)
        else:
            use_task_batch_norm(child)
    return module


def functional_forward(module, params, X, reference=None):
    """``module`` applied to ``X`` with the parameters ``params``.

    The call never writes into ``module``, not even for its duration: it
    runs on a private structural copy of the network (see
    :func:`skeleton`) with every parameter and buffer passed explicitly,
    so threads predicting with one learner cannot see each other's
    weights, and gradients still flow to the tensors in ``params``.

    Parameters
    ----------
    module : torch.nn.Module
        Its own parameters and buffers stand in for any missing from
        ``params``.

    params : dict of str to torch.Tensor

    X : torch.Tensor

    reference : torch.Tensor or None, default=None
        The support set whose statistics normalise ``X`` in the
        :class:`TaskBatchNorm` layers: it is run through the network
        ahead of ``X`` in one batch and its outputs are dropped. Pass None
        for a module without such layers, or to normalise ``X`` with its
        own statistics.

    Returns
    -------
    output : torch.Tensor

    Examples
    --------
    >>> import torch
    >>> from skmeta.optimization import functional_forward
    >>> module = torch.nn.Linear(3, 1)
    >>> params = {"weight": torch.ones(1, 3), "bias": torch.zeros(1)}
    >>> functional_forward(module, params, torch.ones(2, 3))
    tensor([[3.],
            [3.]])
    """
    tensors = {**dict(module.named_buffers()), **dict(module.named_parameters()), **params}
    private = skeleton(module)
    if reference is None:
        return functional_call(private, tensors, (X,))
    n_reference = reference.shape[0]
    with reference_rows(n_reference):
        output = functional_call(private, tensors, (torch.cat([reference, X]),))
    return output[n_reference:]


# Per thread, the skeleton of each module: functional_call swaps tensors into
# the module it is given while it runs, so a module shared between threads
# must never be the one it runs on.
_SKELETONS = threading.local()


def skeleton(module):
    """This thread's private structural copy of ``module``.

    The copy has the modules, hooks and settings of ``module`` but its
    parameters and buffers are placeholders on the "meta" device (no
    memory): it is only ever run with ``torch.func.functional_call`` and
    every tensor passed in, as :func:`functional_forward` does. It is built
    once per thread and module, rebuilt if the module's parameter or buffer
    names change, and follows the module's train/eval flags.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    skeleton : torch.nn.Module

    Examples
    --------
    >>> import torch
    >>> from skmeta.optimization._inner_loop import skeleton
    >>> layer = torch.nn.Linear(2, 1)
    >>> skeleton(layer).weight.device
    device(type='meta')
    >>> skeleton(layer) is skeleton(layer)
    True
    """
    cache = getattr(_SKELETONS, "by_module", None)
    if cache is None:
        cache = _SKELETONS.by_module = weakref.WeakKeyDictionary()
    names = (
        tuple(name for name, _ in module.named_parameters()),
        tuple(name for name, _ in module.named_buffers()),
    )
    entry = cache.get(module)
    if entry is None or entry[0] != names:
        entry = cache[module] = (names, _placeholder_copy(module))
    private = entry[1]
    for original, copied in zip(module.modules(), private.modules()):
        if copied.training != original.training:
            copied.training = original.training
    return private


def _placeholder_copy(module):
    memo = {}
    for tensor in (*module.parameters(), *module.buffers()):
        placeholder = torch.empty_like(tensor, device="meta")
        if isinstance(tensor, nn.Parameter):
            placeholder = nn.Parameter(placeholder, requires_grad=tensor.requires_grad)
        memo[id(tensor)] = placeholder
    return copy.deepcopy(module, memo)


def inner_loop(loss, params, lr, n_steps, first_order=False, update=None, guard_from=None):
    """Gradient descent on ``loss`` from ``params``, as a pure function.

    Parameters
    ----------
    loss : callable
        ``loss(params) -> scalar tensor``.

    params : dict of str to torch.Tensor
        The starting point (the meta-parameters being adapted).

    lr : float or dict of str to torch.Tensor
        Step size: one for all, or one per parameter and per element
        (Meta-SGD's learned rates). Unused with ``update``.

    n_steps : int
        Number of steps; 0 returns ``params``.

    first_order : bool, default=False
        Detach the inner gradients (and losses) from the outer graph, so
        the meta-gradient drops the second-order term (Finn et al.'s
        first-order approximation, Ravi and Larochelle's truncation).
        Without an outer graph (adaptation in ``fit``) both give the same
        steps.

    update : callable or None, default=None
        A learned update rule in place of ``params - lr * grads``:
        ``update(params, grads, loss, state) -> (params, state)``, where
        ``loss`` is the support loss at ``params`` and ``state`` is what
        the rule returned at the previous step (None at the first).

    guard_from : int or None, default=None
        Steps from this index on are kept only where they do not raise the
        loss: a step that raises it, or makes it non-finite, is halved until
        it does not (at most ``MAX_HALVINGS`` times, and later steps keep the
        smaller size); when no halving helps, the loop stops there. For
        steps beyond those a rule was meta-trained for, which can overshoot
        (Meta-SGD's learned step sizes are sized for a fixed number of
        steps). Each guarded step costs one more evaluation of ``loss``, and
        no gradient flows through the guard's comparison, so use it for
        adaptation without an outer graph. None guards no step.

    Returns
    -------
    adapted : dict of str to torch.Tensor

    Examples
    --------
    >>> import torch
    >>> from skmeta.optimization import inner_loop
    >>> adapted = inner_loop(lambda p: (p["w"] ** 2).sum(), {"w": torch.tensor([1.0])}, lr=0.25, n_steps=2)
    >>> adapted["w"]
    tensor([0.2500])
    """
    gradient = grad_and_value(loss)
    if not first_order:  # the outer backward will differentiate these gradients
        gradient = _unfused()(gradient)
    state, scale = None, 1.0
    for step in range(n_steps):
        grads, loss_value = gradient(params)
        if first_order:
            grads, loss_value = {name: g.detach() for name, g in grads.items()}, loss_value.detach()
        if update is None:
            stepped = {name: p - (lr[name] if isinstance(lr, dict) else lr) * grads[name] for name, p in params.items()}
        else:
            stepped, state = update(params, grads, loss_value, state)
        if guard_from is not None and step >= guard_from:
            stepped, scale = _descending(loss, params, stepped, loss_value, scale)
            if stepped is None:
                break
        params = {name: _laid_out_as(stepped[name], p) for name, p in params.items()}
    return params


MAX_HALVINGS = 10


def _descending(loss, params, stepped, current, scale):
    """``(point, scale)``: the step from ``params`` to ``stepped``, times
    ``scale`` and halved as often as needed (up to ``MAX_HALVINGS`` times)
    for ``loss`` not to rise above ``current``; ``(None, scale)`` when no
    halving gets there."""
    with torch.no_grad():
        for _ in range(MAX_HALVINGS + 1):
            point = stepped if scale == 1.0 else {name: p + scale * (stepped[name] - p) for name, p in params.items()}
            value = loss(point)
            if bool(torch.isfinite(value) & (value <= current)):
                return point, scale
            scale /= 2
    return None, scale


def _laid_out_as(new, old):
    """``new`` with the memory layout (strides) of ``old``.

    Arithmetic need not keep a layout that the shape leaves ambiguous: a
    channels-last convolution weight with one input channel comes out of
    ``value - lr * grad`` contiguous, and the convolution then returns
    contiguous activations, on which CPU max pooling takes a much slower
    kernel (Conv-4's first block on Omniglot).
    """
    if new.stride() == old.stride():
        return new
    return torch.empty_like(old).copy_(new)


def map_tasks(task_fn, tasks, vectorize):
    """Apply a per-task function to every task of a meta-batch.

    Parameters
    ----------
    task_fn : callable
        ``task_fn(X_support, y_support, X_query, y_query, n_way)`` returning
        a tuple whose items are tensors or dicts of tensors.

    tasks : list of :class:`~skmeta.base.EncodedTask`

    vectorize : bool
        Batch the tasks with ``torch.func.vmap`` when they have equal
        shapes (tasks of different shapes always run one by one).

    Returns
    -------
    outputs : tuple
        ``task_fn``'s outputs stacked over the tasks (first axis).

    Examples
    --------
    >>> import torch
    >>> from skmeta.base import EncodedTask
    >>> from skmeta.optimization import map_tasks
    >>> tasks = [EncodedTask(torch.ones(2, 3) * i, torch.tensor([0, 1]), torch.ones(4, 3), torch.tensor([0, 1, 0, 1]), 2)
    ...          for i in range(3)]
    >>> def support_mean(X_support, y_support, X_query, y_query, n_way):
    ...     return (X_support.mean(),)
    >>> map_tasks(support_mean, tasks, vectorize=True)
    (tensor([0., 1., 2.]),)
    """
    same_shapes = len({
        (t.X_support.shape, t.y_support.shape, t.X_query.shape, t.y_query.shape, t.n_way) for t in tasks
    }) == 1
    if vectorize and same_shapes and len(tasks) > 1:
        n_way = tasks[0].n_way
        stacked = [torch.stack(parts) for parts in zip(*(t[:4] for t in tasks))]
        with _unfused():
            # randomness="different": dropout draws its own mask for every task.
            return vmap(lambda *data: task_fn(*data, n_way), randomness="different")(*stacked)
    outputs = [task_fn(*task) for task in tasks]
    return tuple(_stack([output[i] for output in outputs]) for i in range(len(outputs[0])))


def _stack(values):
    if isinstance(values[0], dict):
        return {name: torch.stack([value[name] for value in values]) for name in values[0]}
    return torch.stack(values)
