"""Learners across tabular datasets: meta-trained on datasets whose features
differ in number and meaning, adapted to a new dataset from a few rows."""

from .featurevote import FeatureVoteClassifier, FeatureVoteNet
from .incontext import InContextClassifier, InContextNet

__all__ = ["FeatureVoteClassifier", "FeatureVoteNet", "InContextClassifier", "InContextNet"]
