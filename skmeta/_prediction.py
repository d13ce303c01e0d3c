"""Prediction in bounded memory, with no silent non-finite output.

Every family scores queries through :func:`predict_in_chunks`: rows are
scored ``predict_batch_size`` at a time, so the memory a prediction takes
does not grow with the number of queries (a relation module scores
``n_query * n_way`` pairs, a siamese head ``n_query * n_support``), and
each query's scores do not depend on which other queries share its chunk.
Scores that are NaN or infinite (float32 overflow on features of huge
magnitude) raise a ValueError that says so, instead of turning into NaN
probabilities.
"""

import numbers

import torch
from sklearn.utils import check_scalar

__all__ = ["PREDICT_BATCH_SIZE", "PREDICT_BATCH_SIZE_DOC", "predict_in_chunks", "check_finite"]

# Rows per chunk: large enough that a chunk keeps a CPU busy (a Conv-4 or MLP
# forward pass gains little beyond a few hundred rows), small enough to bound
# memory (Conv-4 on 28x28 images: about 100 MB of activations per layer).
PREDICT_BATCH_SIZE = 512

# How every learner with the parameter documents it (no braces: the
# optimisation family formats its docstrings).
PREDICT_BATCH_SIZE_DOC = """\
    predict_batch_size : int, default=512
        Query rows scored at once by ``predict``, ``predict_proba``,
        ``score`` (and ``transform`` where there is one): any number of
        rows is predicted in chunks of this size, in memory bounded by it.
        Predictions do not depend on it. Not to be confused with
        ``batch_size``, the number of tasks per meta-batch.
"""


def check_predict_batch_size(value):
    """``value`` if it is a positive integer; a ValueError/TypeError naming it otherwise."""
    check_scalar(value, "predict_batch_size", numbers.Integral, min_val=1)
    return int(value)


def predict_in_chunks(function, X, batch_size):
    """``function`` applied to consecutive chunks of rows of ``X``, concatenated.

    Parameters
    ----------
    function : callable
        Maps a tensor of rows to a tensor with one row per input row.

    X : torch.Tensor of shape (n_samples, ...)

    batch_size : int
        Rows per chunk (``predict_batch_size``).

    Returns
    -------
    output : torch.Tensor of shape (n_samples, ...)

    Examples
    --------
    >>> import torch
    >>> from skmeta._prediction import predict_in_chunks
    >>> predict_in_chunks(lambda rows: 2 * rows, torch.arange(5.0), batch_size=2)
    tensor([0., 2., 4., 6., 8.])
    """
    batch_size = check_predict_batch_size(batch_size)
    if len(X) <= batch_size:
        return function(X)
    chunks = torch.split(X, batch_size)
    first = function(chunks[0])
    # Written into one output allocated up front: small per-chunk outputs
    # kept alive between the large temporaries of the next chunks pin the
    # heap, and the process grew by ~13 MB per chunk (glibc malloc,
    # FeatureVote on 100k rows) instead of reusing the freed memory.
    output = first.new_empty((len(X), *first.shape[1:]))
    output[: len(first)] = first
    start = len(first)
    for chunk in chunks[1:]:
        output[start : start + len(chunk)] = function(chunk)
        start += len(chunk)
    return output


def check_finite(values, X, learner, what, allow_neg_inf=False):
    """Raise a ValueError naming the overflow when ``values`` has NaN or an infinity.

    Parameters
    ----------
    values : torch.Tensor
        Embeddings, scores or predictions computed from ``X``.

    X : torch.Tensor
        The rows they were computed from, for the message.

    learner : object
        Named in the message.

    what : str
        What ``values`` are, for the message.

    allow_neg_inf : bool, default=False
        Accept -inf (a class score of zero probability) as long as every
        row has a finite maximum, so that its softmax is defined.

    Examples
    --------
    >>> import torch
    >>> from skmeta._prediction import check_finite
    >>> check_finite(torch.tensor([[0.0, -float("inf")]]), torch.zeros(1, 2), "a learner", "scores",
    ...              allow_neg_inf=True)
    """
    if allow_neg_inf:
        bad = torch.isnan(values).any() or torch.isposinf(values).any()
        if not bad and values.ndim == 2 and values.shape[1] > 0:
            bad = not torch.isfinite(values.amax(dim=1)).all()
    else:
        bad = not torch.isfinite(values).all()
    if bad:
        largest = float(X.abs().max()) if X.numel() else 0.0
        raise ValueError(
            f"{type(learner).__name__} computed non-finite {what} (NaN or infinity) for X: its values "
            f"(largest magnitude {largest:.3g}) overflow float32 arithmetic in the network. Rescale X "
            "(e.g. StandardScaler) before meta-fitting and predicting."
        )
