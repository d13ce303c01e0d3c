"""One registry of every public estimator: scikit-learn's estimator checks,
the meta-learning contract's checks, and the expected failures of both, each
with its reason (scikit-learn's own tests/test_common.py pattern).

The scikit-learn checks run on never-meta-fitted learners in float64
(``precision="float64"``): checks such as ``check_methods_subset_invariance``
compare predictions on a subset with predictions on the whole batch to 1e-7
relative, below float32's resolution, and float32 matrix kernels round
differently for different batch sizes (by up to one unit in the last place,
depending on the CPU). In float64 that comparison is meaningful on any CPU.
"""

import warnings

import pytest
import torch
from sklearn.datasets import load_wine
from sklearn.utils.estimator_checks import parametrize_with_checks
from skorch.callbacks import GradientNormClipping

from conftest import make_clusters, make_relevance_family, make_subspace_classes, subspace_tasks
from skmeta import (
    ANILClassifier,
    ANILRegressor,
    EpisodeSampler,
    FeatureVoteClassifier,
    InContextClassifier,
    MAMLClassifier,
    MAMLRegressor,
    MANNClassifier,
    MatchingNetworkClassifier,
    MetaLSTMClassifier,
    MetaLSTMRegressor,
    MetaSGDClassifier,
    MetaSGDRegressor,
    PretrainedClassifier,
    ProtoNetClassifier,
    RelationNetworkClassifier,
    ReptileClassifier,
    ReptileRegressor,
    SiameseNetworkClassifier,
)
from skmeta.base import NotMetaFittedWarning
from sklearn.linear_model import Ridge
from sklearn.tree import DecisionTreeClassifier

from skmeta.model_selection import MetaSearchCV
from skmeta.datasets import SinusoidTasks, make_prior_tasks, make_sinusoid
from skmeta.utils.estimator_checks import (
    check_clone_keeps_meta_parameters,
    check_fit_leaves_meta_state,
    check_meta_fit_returns_self_unfitted,
    parametrize_with_meta_checks,
)

# ----------------------------------------------------------------------
# scikit-learn's checks
# ----------------------------------------------------------------------
MLP = dict(module__hidden_sizes=(16,), module__out_features=8)
SMALL = dict(verbose=0, random_state=0, precision="float64")
IN_CONTEXT = dict(module__max_features=16, module__d_model=8, module__n_heads=2, module__n_layers=1,
                  module__dim_feedforward=16)
MANN_NET = dict(module__controller_size=32, module__memory_rows=16, module__memory_width=8, module__n_reads=1)

SKLEARN_CHECKED = [
    ProtoNetClassifier(**MLP, **SMALL),
    MatchingNetworkClassifier(**MLP, **SMALL),
    MatchingNetworkClassifier(fce=True, fce_steps=2, **MLP, **SMALL),
    SiameseNetworkClassifier(**MLP, **SMALL),
    RelationNetworkClassifier(relation__hidden_sizes=(8,), **MLP, **SMALL),
    PretrainedClassifier(**MLP, **SMALL),
    PretrainedClassifier(classifier="logistic", **MLP, **SMALL),
    MANNClassifier(**MANN_NET, **SMALL),
    FeatureVoteClassifier(module__hidden_size=8, **SMALL),
    InContextClassifier(pretrained=False, **IN_CONTEXT, **SMALL),
    InContextClassifier(**SMALL),  # loads the shipped weights at its first fit
    *(cls(module__hidden_sizes=(8,), **SMALL) for cls in (
        MAMLClassifier, MAMLRegressor, MetaSGDClassifier, MetaSGDRegressor,
        ANILClassifier, ANILRegressor, ReptileClassifier, ReptileRegressor, MetaLSTMClassifier, MetaLSTMRegressor,
    )),
]

# Every expected failure of a scikit-learn check, with its reason.
SKORCH_INIT = (
    "skorch records its state (initialized_, history_) and the routed module__* parameters in __init__"
)
EXPECTED_FAILED_SKLEARN_CHECKS = {
    type(estimator).__name__: {"check_no_attributes_set_in_init": SKORCH_INIT} for estimator in SKLEARN_CHECKED
}


@parametrize_with_checks(
    SKLEARN_CHECKED, expected_failed_checks=lambda e: EXPECTED_FAILED_SKLEARN_CHECKS[type(e).__name__]
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotMetaFittedWarning)
        check(estimator)


# The search that learns what to try first, on a classifier and a regressor.
SEARCHES = [
    MetaSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [1, 3]}, n_candidates=2, cv=2,
                 error_score="raise"),
    MetaSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, n_candidates=2, cv=2, error_score="raise"),
]
EXPECTED_FAILED_SEARCH_CHECKS = {
    # scikit-learn's own reason for GridSearchCV and RandomizedSearchCV, whose fit this is.
    "check_supervised_y_2d": "DataConversionWarning not caught",
}


@parametrize_with_checks(SEARCHES, expected_failed_checks=lambda e: EXPECTED_FAILED_SEARCH_CHECKS)
def test_search_is_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotMetaFittedWarning)
        check(estimator)


# ----------------------------------------------------------------------
# the meta-learning contract's checks
# ----------------------------------------------------------------------
TASKS, X_NEW, Y_NEW = subspace_tasks()
METRIC = dict(module__hidden_sizes=(32,), module__out_features=16, max_epochs=1, lr=3e-3, verbose=0, random_state=0)

X_OPT, Y_OPT = make_subspace_classes(n_classes=30, n_per_class=12, n_features=10)
OPT_TASKS = list(EpisodeSampler(X_OPT[Y_OPT < 20], Y_OPT[Y_OPT < 20], n_way=3, k_shot=2, n_query=4, n_tasks=24,
                                random_state=0))
X_OPT_NEW, Y_OPT_NEW = X_OPT[Y_OPT >= 20], Y_OPT[Y_OPT >= 20]
SINE_TASKS = list(SinusoidTasks(n_tasks=24, k_shot=5, n_query=5, random_state=0))
X_SINE, Y_SINE = make_sinusoid(40, random_state=1)
OPT = dict(module__hidden_sizes=(16,), inner_lr=0.3, batch_size=4, max_epochs=1, verbose=0, random_state=0)
SINE = dict(OPT, inner_lr=0.01)

X_CLUSTERS, Y_CLUSTERS = make_clusters()
MANN_TASKS = list(EpisodeSampler(X_CLUSTERS[Y_CLUSTERS < 40], Y_CLUSTERS[Y_CLUSTERS < 40], n_way=3, k_shot=3,
                                 n_query=3, n_tasks=16, random_state=0))
MANN = dict(MANN_NET, module__n_way=3, batch_size=8, lr=1e-2, max_epochs=1, verbose=0, random_state=0,
            callbacks=[GradientNormClipping(10)])

VOTE_TASKS, X_VOTE, Y_VOTE = make_relevance_family(n_tasks=24)
PRIOR_TASKS = list(make_prior_tasks(n_tasks=24, n_way=(2, 4), k_shot=(1, 3), n_query=3, max_features=20,
                                    random_state=0))
X_WINE, Y_WINE = load_wine(return_X_y=True)

META_CASES = [
    (ProtoNetClassifier(**METRIC), TASKS[:20], X_NEW, Y_NEW),
    (MatchingNetworkClassifier(**METRIC), TASKS[:20], X_NEW, Y_NEW),
    (MatchingNetworkClassifier(fce=True, fce_steps=2, **METRIC), TASKS[:20], X_NEW, Y_NEW),
    (SiameseNetworkClassifier(**METRIC), TASKS[:20], X_NEW, Y_NEW),
    (RelationNetworkClassifier(**METRIC), TASKS[:20], X_NEW, Y_NEW),
    (PretrainedClassifier(**dict(METRIC, max_epochs=2)), TASKS[:20], X_NEW, Y_NEW),
    (PretrainedClassifier(classifier="logistic", **dict(METRIC, max_epochs=2)), TASKS[:20], X_NEW, Y_NEW),
    (MANNClassifier(**MANN), MANN_TASKS, X_CLUSTERS[Y_CLUSTERS >= 40], Y_CLUSTERS[Y_CLUSTERS >= 40]),
    (FeatureVoteClassifier(module__hidden_size=8, max_epochs=1, verbose=0, random_state=0), VOTE_TASKS, X_VOTE, Y_VOTE),
    (InContextClassifier(pretrained=False, max_epochs=1, verbose=0, random_state=0, **IN_CONTEXT), PRIOR_TASKS,
     X_WINE, Y_WINE),
    (MAMLClassifier(**OPT), OPT_TASKS, X_OPT_NEW, Y_OPT_NEW),
    (MAMLClassifier(**OPT, first_order=True), OPT_TASKS, X_OPT_NEW, Y_OPT_NEW),
    (MAMLRegressor(**SINE), SINE_TASKS, X_SINE, Y_SINE),
    (MetaSGDClassifier(**OPT), OPT_TASKS, X_OPT_NEW, Y_OPT_NEW),
    (MetaSGDRegressor(**SINE), SINE_TASKS, X_SINE, Y_SINE),
    (ANILClassifier(**dict(OPT, module__hidden_sizes=(16, 16), inner_steps=3)), OPT_TASKS, X_OPT_NEW, Y_OPT_NEW),
    (ANILRegressor(**dict(SINE, module__hidden_sizes=(16, 16), inner_steps=3)), SINE_TASKS, X_SINE, Y_SINE),
    (ReptileClassifier(**OPT), OPT_TASKS, X_OPT_NEW, Y_OPT_NEW),
    (ReptileRegressor(**SINE), SINE_TASKS, X_SINE, Y_SINE),
    (MetaLSTMClassifier(**dict(OPT, inner_steps=2)), OPT_TASKS, X_OPT_NEW, Y_OPT_NEW),
    (MetaLSTMClassifier(**dict(OPT, inner_steps=2), first_order=True), OPT_TASKS, X_OPT_NEW, Y_OPT_NEW),
    (MetaLSTMRegressor(**dict(SINE, inner_steps=2)), SINE_TASKS, X_SINE, Y_SINE),
]

# Every expected failure of a meta check, with its reason.
EXPECTED_FAILED_META_CHECKS = {
    "FeatureVoteClassifier": {
        "check_feature_mismatch_raises": "adapting to datasets of other widths is what this learner is for",
    },
    "InContextClassifier": {
        "check_feature_mismatch_raises": "adapting to datasets of other widths is what this learner is for",
        "check_bad_input_keeps_meta_state": "NaN is a missing value for this learner, not bad input",
    },
}


@parametrize_with_meta_checks(META_CASES)
def test_meta_protocol(check):
    estimator = check.args[0]
    reason = EXPECTED_FAILED_META_CHECKS.get(type(estimator).__name__, {}).get(check.func.__name__)
    if reason is None:
        check()
    else:
        with pytest.raises(AssertionError):
            check()


def test_every_public_estimator_is_registered():
    import skmeta

    public = {name for name in skmeta.__all__ if name.endswith(("Classifier", "Regressor"))}
    assert public == {type(e).__name__ for e in SKLEARN_CHECKED}
    assert public == {type(case[0]).__name__ for case in META_CASES}


# ----------------------------------------------------------------------
# the meta checks catch broken learners
# ----------------------------------------------------------------------
class _AdaptsIntoMetaParameters(ProtoNetClassifier):
    """Writes the support set into the meta-learned weights: what fit must never do."""

    def _adapt(self, X, y):
        with torch.no_grad():
            next(self.module_.parameters()).add_(1e-3)
        super()._adapt(X, y)


class _ClonesShareModules(ProtoNetClassifier):
    """A clone that shares the meta-learned network instead of copying it."""

    def __sklearn_clone__(self):
        twin = super().__sklearn_clone__()
        if self._is_meta_fitted():
            twin.module_ = self.module_
        return twin


class _MetaFitMakesFitted(ProtoNetClassifier):
    """Looks adapted to a support set after meta_fit alone."""

    def meta_fit(self, tasks, val_tasks=None):
        super().meta_fit(tasks, val_tasks)
        self.n_features_in_ = self.meta_n_features_in_
        return self


@pytest.mark.parametrize("broken, check", [
    (_AdaptsIntoMetaParameters, check_fit_leaves_meta_state),
    (_ClonesShareModules, check_clone_keeps_meta_parameters),
    (_MetaFitMakesFitted, check_meta_fit_returns_self_unfitted),
])
def test_meta_checks_catch_a_broken_learner(broken, check):
    learner = broken(**METRIC)
    with pytest.raises(AssertionError):
        check(learner, TASKS[:10], X_NEW, Y_NEW)
    # The same check passes on the learner it was broken from.
    check(ProtoNetClassifier(**METRIC), TASKS[:10], X_NEW, Y_NEW)
