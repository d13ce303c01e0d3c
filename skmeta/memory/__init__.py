"""Memory-based meta-learners: a network that stores the support set in an
external memory and classifies queries by recalling it."""

from ._memory import MANN, MANNState
from .mann import MANNClassifier

__all__ = ["MANNClassifier", "MANN", "MANNState"]
