"""skmeta: meta-learning (few-shot learning) as scikit-learn estimators."""

from ._version import __version__
from .metric import (
    MatchingNetworkClassifier,
    PretrainedClassifier,
    ProtoNetClassifier,
    RelationNetworkClassifier,
    SiameseNetworkClassifier,
)
from .memory import MANNClassifier
from .optimization import (
    ANILClassifier,
    ANILRegressor,
    MAMLClassifier,
    MAMLRegressor,
    MetaLSTMClassifier,
    MetaLSTMRegressor,
    MetaSGDClassifier,
    MetaSGDRegressor,
    ReptileClassifier,
    ReptileRegressor,
)
from .tabular import FeatureVoteClassifier, InContextClassifier
from .tasks import EpisodeSampler, Task

__all__ = [
    "EpisodeSampler",
    "Task",
    # metric-based
    "ProtoNetClassifier",
    "MatchingNetworkClassifier",
    "SiameseNetworkClassifier",
    "RelationNetworkClassifier",
    "PretrainedClassifier",
    # optimisation-based
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
    # memory-based
    "MANNClassifier",
    # tabular, across datasets
    "FeatureVoteClassifier",
    "InContextClassifier",
    "__version__",
]
