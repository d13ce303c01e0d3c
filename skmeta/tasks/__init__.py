"""Few-shot tasks and the collections that produce them.

A *task* (an episode) is a small labelled support set and a query set. A task
collection is any iterable of :class:`Task`; ``meta_fit`` consumes one.
"""

from ._collections import DatasetCollection, split_classes
from ._episodes import EpisodeSampler, Task, rotate_classes

__all__ = ["Task", "EpisodeSampler", "rotate_classes", "split_classes", "DatasetCollection"]
