"""Metric-based meta-learners: classify queries by their distance to the
support set in a meta-learned embedding, and the pre-train baselines that
classify in a backbone's features without episodic training."""

from .matching import MatchingNetworkClassifier
from .pretrain import PretrainedClassifier
from .protonet import ProtoNetClassifier
from .relation import RelationNetworkClassifier
from .siamese import SiameseNetworkClassifier

__all__ = [
    "MatchingNetworkClassifier",
    "PretrainedClassifier",
    "ProtoNetClassifier",
    "RelationNetworkClassifier",
    "SiameseNetworkClassifier",
]
