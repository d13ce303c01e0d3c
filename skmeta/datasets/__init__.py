"""Dataset loaders and task generators."""

from ._base import get_data_home
from ._generators import make_subspace_classification
from ._omniglot import OMNIGLOT_TEST_ALPHABETS, load_omniglot, load_omniglot_runs
from ..tasks import PriorTasks, SinusoidTasks, make_prior_tasks, make_sinusoid
from ._tabular import list_tabular_datasets, load_tabular

__all__ = [
    "get_data_home",
    "make_subspace_classification",
    "load_omniglot",
    "load_omniglot_runs",
    "OMNIGLOT_TEST_ALPHABETS",
    "SinusoidTasks",
    "make_sinusoid",
    "load_tabular",
    "PriorTasks",
    "make_prior_tasks",
    "list_tabular_datasets",
]
