"""Generated few-shot classification families: embedded data that needs no files."""

import numpy as np
from sklearn.utils import Bunch, check_random_state

__all__ = ["make_subspace_classification"]


def make_subspace_classification(
    n_classes=200,
    n_samples_per_class=20,
    n_features=32,
    n_informative=4,
    class_sep=1.5,
    informative_noise=0.3,
    noise=2.0,
    random_state=None,
):
    """Many classes that differ only along a few shared directions.

    Class means are drawn in an ``n_informative``-dimensional subspace;
    every example adds small noise inside it and larger noise in the other
    directions; finally all features are mixed by one random rotation, so
    that no single feature is informative. Any fixed metric on the raw
    features (nearest neighbour, nearest centroid) is dominated by the
    noise, while a metric learned across classes (which directions matter)
    carries over to new classes: a minimal family on which meta-learning
    visibly pays off, and the embedded default of the ``skmeta`` command.

    Parameters
    ----------
    n_classes : int, default=200
    n_samples_per_class : int, default=20
    n_features : int, default=32
    n_informative : int, default=4
        Dimension of the subspace the class means live in.
    class_sep : float, default=1.5
        Standard deviation of the class means in that subspace.
    informative_noise : float, default=0.3
        Within-class standard deviation inside the subspace.
    noise : float, default=2.0
        Standard deviation in the other directions.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    data : Bunch
        ``data`` (n_classes * n_samples_per_class, n_features) float32,
        ``target`` int64 class of each example (sorted), ``basis`` the
        rotation, whose first ``n_informative`` columns span the informative
        subspace.

    Examples
    --------
    >>> from skmeta.datasets import make_subspace_classification
    >>> data = make_subspace_classification(n_classes=10, random_state=0)
    >>> data.data.shape, data.target[:3].tolist()
    ((200, 32), [0, 0, 0])
    """
    if not 1 <= n_informative <= n_features:
        raise ValueError(f"n_informative must be in [1, n_features={n_features}], got {n_informative}")
    rng = check_random_state(random_state)
    basis = np.linalg.qr(rng.randn(n_features, n_features))[0]
    means = np.zeros((n_classes, n_features))
    means[:, :n_informative] = rng.randn(n_classes, n_informative) * class_sep
    within = rng.randn(n_classes, n_samples_per_class, n_features)
    within[..., :n_informative] *= informative_noise
    within[..., n_informative:] *= noise
    X = (means[:, None, :] + within).reshape(-1, n_features) @ basis.T
    y = np.repeat(np.arange(n_classes), n_samples_per_class)
    return Bunch(data=X.astype(np.float32), target=y, basis=basis)
