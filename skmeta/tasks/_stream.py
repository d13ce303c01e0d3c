"""The core every task collection shares: one seeded random stream, drawn
in vectorised chunks, whose position can be saved and restored; and the
index arithmetic that draws N-way episodes from examples grouped by class."""

import numbers
from abc import ABC, abstractmethod

import numpy as np
import torch
from sklearn.utils import check_random_state, check_scalar

__all__ = ["TaskStream", "ClassPool", "check_episode_shape"]


def check_episode_shape(n_way, k_shot, n_query, n_tasks=None, *, n_query_none=False, n_tasks_none=True,
                        n_tasks_name="n_tasks"):
    """The bounds every episode source shares (samplers, collections,
    :class:`~skmeta.model_selection.EpisodicSplit`): at least 2 classes,
    1 support and 1 query example per class, and 1 episode."""
    check_scalar(n_way, "n_way", numbers.Integral, min_val=2)
    check_scalar(k_shot, "k_shot", numbers.Integral, min_val=1)
    if not (n_query is None and n_query_none):
        check_scalar(n_query, "n_query", numbers.Integral, min_val=1)
    if not (n_tasks is None and n_tasks_none):
        check_scalar(n_tasks, n_tasks_name, numbers.Integral, min_val=1)


class ClassPool:
    """Examples grouped by class code, for drawing episodes by index arithmetic.

    Class ``c`` owns ``order[offsets[c] : offsets[c] + counts[c]]``.
    """

    def __init__(self, codes, n_classes):
        codes = torch.as_tensor(codes, dtype=torch.long)
        self.counts = torch.bincount(codes, minlength=n_classes)
        self.order = torch.argsort(codes, stable=True)
        self.offsets = torch.cumsum(self.counts, 0) - self.counts

    def draw(self, generator, n_episodes, n_way, n_per_class, classes=None):
        """Random episodes: ``n_way`` distinct classes (among ``classes``,
        default all), then ``n_per_class`` distinct examples of each.

        Returns ``(index, chosen, counts)``: example indices of shape
        ``(n_episodes, n_way, n_per_class)`` grouped by class, the chosen
        class codes ``(n_episodes, n_way)`` and their sizes. With
        ``n_per_class=None`` every example of a chosen class is drawn, in
        random order; rows beyond a class's size then hold other indices and
        must be cut at ``counts``.
        """
        n_candidates = len(self.counts) if classes is None else len(classes)
        # Distinct classes: the first n_way of a random permutation per episode.
        chosen = torch.rand(n_episodes, n_candidates, generator=generator).argsort(dim=1)[:, :n_way]
        if classes is not None:
            chosen = torch.as_tensor(classes, dtype=torch.long)[chosen]
        counts = self.counts[chosen]
        # Distinct examples within each class: rank random keys, pushing the
        # slots beyond the class size to the end.
        keys = torch.rand(n_episodes, n_way, int(counts.max()), generator=generator)
        keys.masked_fill_(torch.arange(keys.shape[-1]) >= counts.unsqueeze(-1), 2.0)
        ranks = keys.argsort(dim=-1)
        if n_per_class is not None:
            ranks = ranks[..., :n_per_class]
        index = self.order[(self.offsets[chosen].unsqueeze(-1) + ranks).clamp(max=len(self.order) - 1)]
        return index, chosen, counts


class TaskStream(ABC):
    """Base of the task collections that draw from one random stream.

    Each pass yields ``n_tasks`` new tasks (None: endless), drawn
    ``_chunk`` at a time by ``_draw(generator, n)``. The stream is seeded
    from ``random_state`` on first use; its position is part of what
    meta-training saves (:meth:`get_state`, :meth:`set_state`), so a
    resumed run draws the tasks the uninterrupted one would have.

    Examples
    --------
    >>> from skmeta.tasks import SinusoidTasks
    >>> tasks = SinusoidTasks(n_tasks=4, random_state=0)
    >>> state = tasks.get_state()
    >>> first = [float(task.y_support[0]) for task in tasks]
    >>> again = [float(task.y_support[0]) for task in tasks.set_state(state)]
    >>> first == again
    True
    """

    _chunk = 64

    def __len__(self):
        if self.n_tasks is None:
            raise TypeError(f"{type(self).__name__}(n_tasks=None) is endless; set n_tasks to give it a length")
        return self.n_tasks

    def __iter__(self):
        generator = self._stream()
        remaining = self.n_tasks
        while remaining is None or remaining > 0:
            n = self._chunk if remaining is None else min(self._chunk, remaining)
            yield from self._draw(generator, n)
            if remaining is not None:
                remaining -= n

    @abstractmethod
    def _draw(self, generator, n):
        """``n`` tasks from ``generator``, as a list or iterator of Task."""

    def _stream(self):
        if getattr(self, "_generator", None) is None:
            seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
            self._generator = self._new_generator(int(seed))
        return self._generator

    def _new_generator(self, seed):
        """The stream's generator: torch's, or any with ``get_state``/``set_state``."""
        return torch.Generator().manual_seed(seed)

    def first_task(self):
        """The next task of the stream, without advancing it."""
        generator = self._stream()
        state = generator.get_state()
        try:
            return next(iter(self._draw(generator, 1)))
        finally:
            generator.set_state(state)

    def _stream_key(self):
        """What identifies the stream: the class and its parameters."""
        params = {k: v for k, v in vars(self).items() if not k.startswith("_") and not k.endswith("_")}
        seed = params.get("random_state")
        params["random_state"] = seed if isinstance(seed, (numbers.Integral, type(None))) else "instance"
        return f"{type(self).__name__}({sorted((k, repr(v)) for k, v in params.items() if k != 'augment')})"

    def get_state(self):
        """The stream's position: a dict to give back to :meth:`set_state`."""
        return {"stream": self._stream_key(), "generator": self._stream().get_state()}

    def set_state(self, state):
        """Move the stream to a position saved by :meth:`get_state`.

        Raises
        ------
        ValueError
            The state was saved from a collection with other parameters.
        """
        if state.get("stream") != self._stream_key():
            raise ValueError(
                f"this state was saved from another task collection ({state.get('stream')}); "
                f"this one is {self._stream_key()}"
            )
        self._stream().set_state(state["generator"])
        return self
