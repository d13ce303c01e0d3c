"""skmeta: meta-learning (few-shot learning) as scikit-learn estimators."""

from ._version import __version__
from .metric import ProtoNetClassifier
from .tasks import EpisodeSampler, Task

__all__ = ["ProtoNetClassifier", "EpisodeSampler", "Task", "__version__"]
