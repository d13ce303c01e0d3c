"""Few-shot tasks and the collections that produce them.

A *task* (an episode) is a small labelled support set and a query set. A task
collection is any iterable of :class:`Task`; ``meta_fit`` consumes one.
The collections here (:class:`EpisodeSampler` within one pool,
:class:`DatasetCollection` across datasets, :class:`SinusoidTasks` for
regression) share one core, :class:`TaskStream`: a seeded random stream,
drawn in vectorised chunks, whose position meta-training saves.
"""

from ._collections import DatasetCollection, split_classes
from ._episodes import EpisodeSampler, Task, random_affine, rotate_classes
from ._prior import PriorTasks, make_prior_tasks
from ._sinusoid import SinusoidTasks, make_sinusoid
from ._stream import TaskStream

__all__ = [
    "Task",
    "TaskStream",
    "EpisodeSampler",
    "rotate_classes",
    "random_affine",
    "split_classes",
    "DatasetCollection",
    "SinusoidTasks",
    "make_sinusoid",
    "PriorTasks",
    "make_prior_tasks",
]
