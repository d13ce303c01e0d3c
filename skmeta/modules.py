"""Backbones shared by all meta-learners: plain :class:`torch.nn.Module` s.

A backbone maps a batch of inputs to a batch of feature vectors. Metric
learners use its output as the embedding; optimisation-based learners put a
linear head on top (``out_features``). Every backbone accepts flattened
2-D input ``(n_samples, n_features)`` as scikit-learn hands it over, and
reshapes it to what its layers need.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .utils._torch import statistics_rows

__all__ = ["Conv4", "MLP", "conv_block"]


def conv_block(in_channels, out_channels, pool=True):
    """The block of Vinyals et al. (2016): 3x3 convolution, batch norm, ReLU, 2x2 max-pool.

    Parameters
    ----------
    in_channels : int
        Channels of the input.

    out_channels : int
        Channels of the output (convolution filters).

    pool : bool, default=True
        End with the 2x2 max-pooling, which halves the height and width.

    Returns
    -------
    block : torch.nn.Sequential

    Examples
    --------
    >>> import torch
    >>> from skmeta.modules import conv_block
    >>> conv_block(1, 64)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 64, 14, 14])
    """
    layers = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Conv4(nn.Module):
    """The standard few-shot image backbone: four convolutional blocks.

    Each block is a 3x3 convolution with ``hidden_channels`` filters, batch
    normalisation, ReLU and 2x2 max-pooling. On 28x28 Omniglot images the
    output is ``hidden_channels`` features (64 by default), as in Vinyals et
    al. (2016), Snell et al. (2017) and Finn et al. (2017).

    Parameters
    ----------
    input_shape : tuple of int, default=(1, 28, 28)
        ``(channels, height, width)`` of one image. Flattened input of
        ``prod(input_shape)`` features is reshaped to it; 3-D input
        ``(n, height, width)`` gets a channel axis.

    hidden_channels : int, default=64
        Filters per convolution.

    n_blocks : int, default=4
        Number of blocks.

    out_features : int or None, default=None
        If given, a linear layer maps the flattened features to this many
        outputs (the classification head of MAML and its relatives).

    fuse_first_block : {"auto", True, False}, default="auto"
        Compute the first block's convolution and batch normalisation as
        one convolution with folded weights, its statistics taken from the
        9 x channels patch covariance (for inputs of at most 4 channels):
        the same function, gradients and running statistics up to float
        rounding, without batch norm's passes over the largest activation
        map. "auto" folds on CPU, where it was measured to pay (see
        docs/benchmarks/throughput.md); on a GPU, where small batches are
        bound by kernel launches rather than memory passes, its extra small
        kernels are not worth it. False runs the layers one by one.

    Attributes
    ----------
    n_features_out : int
        Size of the returned vectors.

    References
    ----------
    Vinyals, O., Blundell, C., Lillicrap, T., Kavukcuoglu, K. and Wierstra,
    D. (2016). Matching networks for one shot learning. NeurIPS.

    Every block applies its ReLU after the max-pooling, which gives the
    same output (max-pooling commutes with the non-decreasing ReLU) on a
    quarter of the elements.

    Examples
    --------
    >>> import torch
    >>> from skmeta.modules import Conv4
    >>> Conv4()(torch.zeros(5, 784)).shape
    torch.Size([5, 64])
    """

    def __init__(self, input_shape=(1, 28, 28), hidden_channels=64, n_blocks=4, out_features=None,
                 fuse_first_block="auto"):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        if fuse_first_block not in ("auto", True, False):
            raise ValueError(f"fuse_first_block must be 'auto', True or False, got {fuse_first_block!r}")
        self.fuse_first_block = fuse_first_block
        channels, height, width = self.input_shape
        blocks = []
        for i in range(n_blocks):
            blocks.append(conv_block(channels if i == 0 else hidden_channels, hidden_channels))
            height, width = height // 2, width // 2
        self.encoder = nn.Sequential(*blocks)
        n_flat = hidden_channels * max(height, 1) * max(width, 1)
        self.head = None if out_features is None else nn.Linear(n_flat, out_features)
        self.n_features_out = n_flat if out_features is None else out_features
        # Channels-last convolutions are oneDNN's fast layout on CPU, in float32
        # and above all in bfloat16 (see docs/benchmarks/protonet_omniglot.md,
        # bench_protonet_omniglot.py --sections throughput).
        self.encoder.to(memory_format=torch.channels_last)

    def forward(self, X):
        if X.dim() == 2:
            X = X.reshape(-1, *self.input_shape)
        elif X.dim() == 3:
            X = X.unsqueeze(1)
        X = X.contiguous(memory_format=torch.channels_last)
        fold = self.fuse_first_block is True or (self.fuse_first_block == "auto" and X.device.type == "cpu")
        for i, block in enumerate(self.encoder):
            X = _block_forward(block, X, fold=i == 0 and fold and _foldable(block, X))
        features = X.flatten(1)
        return features if self.head is None else self.head(features)


def _block_forward(block, X, fold=False):
    """A conv block with its ReLU after the max-pool: the same output
    (max-pooling commutes with the monotone ReLU) on 4x fewer elements;
    with ``fold``, convolution and batch norm as one folded convolution."""
    layers = list(block)
    if len(layers) == 4 and isinstance(layers[2], nn.ReLU) and isinstance(layers[3], nn.MaxPool2d):
        layers[2], layers[3] = layers[3], layers[2]
    if fold:
        X = _folded_conv_norm(layers[0], layers[1], X)
        layers = layers[2:]
    for layer in layers:
        X = layer(X)
    return X


def _foldable(block, X):
    # A few input channels only: the patch covariance is (9 C)^2, cheap for
    # images (C <= 4), not for hidden layers.
    if len(block) < 3 or not isinstance(block[2], nn.ReLU):
        return False
    conv, norm = block[0], block[1]
    from .optimization._inner_loop import TaskBatchNorm  # here: that module imports this one

    return (
        isinstance(conv, nn.Conv2d) and conv.in_channels <= 4 and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1) and conv.padding == (1, 1) and conv.dilation == (1, 1)
        and conv.groups == 1 and conv.padding_mode == "zeros"
        and (isinstance(norm, (nn.BatchNorm2d, TaskBatchNorm)))
        and (len(block) == 3 or isinstance(block[3], nn.MaxPool2d))
        and X.dim() == 4 and X.shape[0] > 1
        # The statistics are taken without a graph: exact for the weights'
        # gradients, not for the input's (saliency maps, adversarial steps).
        and not X.requires_grad
    )


def _folded_conv_norm(conv, norm, X):
    """``norm(conv(X))`` for a 3x3 convolution over few channels, as one convolution.

    In training mode batch norm subtracts from each output channel ``c``
    its batch mean ``w_c . mu + b_c`` and divides by its standard deviation
    ``sqrt(w_c' S w_c)``, with ``mu`` and ``S`` the mean and covariance of
    the (9 x channels)-dimensional patches of the batch (of the reference
    rows under task batch norm). Folding both into the weights leaves one
    convolution: the same function up to rounding, with the same gradients
    for the weights and the same running statistics, without batch norm's
    passes over the block's largest activation map.
    """
    weight = conv.weight
    bias = conv.bias
    gamma = beta = None
    if norm.weight is not None:
        gamma, beta = norm.weight, norm.bias
    running = isinstance(norm, nn.BatchNorm2d) and norm.running_mean is not None
    if running and not norm.training:
        mean, var = norm.running_mean, norm.running_var
    else:
        rows = statistics_rows() if not isinstance(norm, nn.BatchNorm2d) else None
        reference = X if rows is None else X[:rows]
        # The moments in full precision (under autocast too), centred: the
        # variance of a channel is a difference of large terms otherwise.
        with torch.no_grad(), torch.autocast(X.device.type, enabled=False):
            patches = F.unfold(reference.float() if reference.dtype != torch.float64 else reference, 3, padding=1)
            patches = patches.transpose(0, 1).reshape(patches.shape[1], -1)
            mu = patches.mean(1)
            centred = patches - mu[:, None]
            covariance = centred @ centred.T / patches.shape[1]
        flat = weight.reshape(conv.out_channels, -1)
        mean = flat @ mu.to(flat.dtype) + (bias if bias is not None else 0)
        var = ((flat @ covariance.to(flat.dtype)) * flat).sum(1).clamp_min(0)
        if running and norm.training:
            _update_running_statistics(norm, mean, var, patches.shape[1])
    scale = torch.rsqrt(var + norm.eps)
    if gamma is not None:
        scale = scale * gamma
    # The folded weights keep the layer's memory format: oneDNN's fast
    # convolution needs weights and input both channels-last.
    folded_weight = (weight * scale[:, None, None, None]).contiguous(memory_format=torch.channels_last)
    folded_bias = -mean * scale + (bias * scale if bias is not None else 0)
    if beta is not None:
        folded_bias = folded_bias + beta
    return F.conv2d(X, folded_weight, folded_bias, padding=1)


def _update_running_statistics(norm, mean, var, n_values):
    # As torch's batch norm does: momentum-weighted (or cumulative, with
    # momentum=None) averages of the batch mean and unbiased variance.
    with torch.no_grad():
        norm.num_batches_tracked.add_(1)
        factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
        unbiased = var * (n_values / max(n_values - 1, 1))
        norm.running_mean.mul_(1 - factor).add_(mean.detach().to(norm.running_mean.dtype), alpha=factor)
        norm.running_var.mul_(1 - factor).add_(unbiased.detach().to(norm.running_var.dtype), alpha=factor)


class MLP(nn.Module):
    """A multi-layer perceptron for tabular features.

    ``Linear -> ReLU`` for each hidden layer, then a final ``Linear`` to
    ``out_features`` (no activation, so distances between outputs are not
    truncated at zero). With ``out_features=None`` the output is the last
    hidden layer, after its activation.

    Parameters
    ----------
    in_features : int or None, default=None
        Input size. Meta-learners fill it in from the data when it is left
        as None.

    hidden_sizes : tuple of int, default=(64,)
        Sizes of the hidden layers.

    out_features : int or None, default=64
        Output size.

    batch_norm : bool, default=False
        Batch normalisation after each hidden linear layer.

    dropout : float, default=0.0
        Dropout probability after each hidden activation.

    Examples
    --------
    >>> import torch
    >>> from skmeta.modules import MLP
    >>> MLP(in_features=4, hidden_sizes=(8,), out_features=3)(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(self, in_features=None, hidden_sizes=(64,), out_features=64, batch_norm=False, dropout=0.0):
        super().__init__()
        if in_features is None:
            raise TypeError("MLP needs in_features; meta-learners set it from the data")
        layers = []
        size = int(in_features)
        for hidden in hidden_sizes:
            layers.append(nn.Linear(size, hidden))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
            size = hidden
        if out_features is not None:
            layers.append(nn.Linear(size, out_features))
            size = out_features
        self.layers = nn.Sequential(*layers)
        self.n_features_out = size

    def forward(self, X):
        return self.layers(X.flatten(1))


def infer_n_features_out(module, input_shape):
    """Size of ``module``'s output vectors for inputs of ``input_shape`` (one sample)."""
    if hasattr(module, "n_features_out"):
        return int(module.n_features_out)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            param = next(module.parameters(), None)
            device = param.device if param is not None else "cpu"
            out = module(torch.zeros((2, *input_shape), device=device))
    finally:
        module.train(was_training)
    return int(math.prod(out.shape[1:]))
