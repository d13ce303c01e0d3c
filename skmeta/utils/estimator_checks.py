"""Checks of the meta-learning contract, for every skmeta estimator and for
third-party meta-learners that claim to keep it.

scikit-learn's ``parametrize_with_checks`` tests the task level on
never-meta-fitted instances; these checks test the two levels together on a
small task family: ``meta_fit`` does not make a learner fitted, clones carry
equal but distinct meta state, ``fit`` leaves meta state bit-identical, and
the learner works with ``cross_val_score``, pickling and warm starts.

Examples
--------
>>> import pytest  # doctest: +SKIP
>>> @parametrize_with_meta_checks([(learner, tasks, X_eval, y_eval)])  # doctest: +SKIP
... def test_meta_protocol(check):
...     check()
"""

import copy
import functools
import pickle
import warnings

import numpy as np
import torch
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import KFold, cross_val_score
from sklearn.utils.validation import check_is_fitted

from ..base import NotMetaFittedWarning
from ..utils._torch import owned_modules
from ..model_selection import EpisodicSplit

__all__ = ["meta_state", "check_meta_estimator", "parametrize_with_meta_checks"]


def meta_state(estimator):
    """Copy every meta-learned tensor of a meta-learner.

    The parameters and buffers of each module skorch tracks, including meta
    state a method keeps in a module of its own (learned step sizes, for
    instance). Comparing two results tells whether a call changed what was
    meta-learned.

    Parameters
    ----------
    estimator : MetaLearner
        An initialised or meta-fitted meta-learner.

    Returns
    -------
    state : dict of str to torch.Tensor
        Detached copies, keyed by ``<module>.<name>``.

    Examples
    --------
    >>> import torch
    >>> from skmeta import ProtoNetClassifier
    >>> from skmeta.utils.estimator_checks import meta_state
    >>> learner = ProtoNetClassifier(module__in_features=4, verbose=0, random_state=0).initialize()
    >>> before = meta_state(learner)
    >>> sorted(before)[:2]
    ['module.layers.0.bias', 'module.layers.0.weight']
    >>> all(torch.equal(before[key], value) for key, value in meta_state(learner).items())
    True
    """
    state = {}
    for name, module in owned_modules(estimator).items():
        for key, value in module.state_dict().items():
            state[f"{name[:-1]}.{key}"] = value.detach().clone()
    return state


def assert_meta_state_equal(a, b):
    assert a.keys() == b.keys(), f"meta state keys differ: {sorted(set(a) ^ set(b))}"
    for key in a:
        assert torch.equal(a[key], b[key]), f"meta state {key} changed"


def _first_episode(estimator, X, y, random_state=0):
    if is_classifier(estimator):
        n_way = min(3, len(np.unique(y)))
        cv = EpisodicSplit(n_way=n_way, k_shot=2, n_query=3, n_episodes=2, random_state=random_state)
    else:
        cv = KFold(2, shuffle=True, random_state=random_state)
    return list(cv.split(X, y))


def _cv(estimator):
    if is_classifier(estimator):
        return EpisodicSplit(n_way=3, k_shot=2, n_query=3, n_episodes=4, random_state=0)
    return KFold(4, shuffle=True, random_state=0)


def check_meta_fit_returns_self_unfitted(estimator, tasks, X, y):
    learner = clone(estimator)
    assert learner.meta_fit(tasks) is learner
    try:
        check_is_fitted(learner)
    except NotFittedError:
        return
    raise AssertionError("meta_fit must not make the learner fitted: it has seen no support set")


def check_clone_keeps_meta_parameters(estimator, tasks, X, y):
    learner = clone(estimator).meta_fit(tasks)
    twin = clone(learner)
    a, b = meta_state(learner), meta_state(twin)
    assert a, "a meta-fitted learner has meta state"
    assert_meta_state_equal(a, b)
    for name, module in owned_modules(learner).items():
        assert getattr(twin, name) is not module, "clones must not share modules"
    try:
        check_is_fitted(twin)
    except NotFittedError:
        pass
    else:
        raise AssertionError("a clone forgets the task")


def check_fit_leaves_meta_state(estimator, tasks, X, y):
    learner = clone(estimator).meta_fit(tasks)
    before = meta_state(learner)
    (support, query), _ = _first_episode(learner, X, y)
    learner.fit(X[support], y[support])
    learner.predict(X[query])
    assert_meta_state_equal(before, meta_state(learner))


def check_fit_forgets_previous_task(estimator, tasks, X, y):
    learner = clone(estimator).meta_fit(tasks)
    (support_a, _), (support_b, query_b) = _first_episode(learner, X, y)
    expected = clone(learner).fit(X[support_b], y[support_b]).predict(X[query_b])
    learner.fit(X[support_a], y[support_a])
    got = learner.fit(X[support_b], y[support_b]).predict(X[query_b])
    np.testing.assert_array_equal(got, expected)


def check_cross_val_score_uses_meta_fit(estimator, tasks, X, y):
    learner = clone(estimator).meta_fit(tasks)
    cv = _cv(learner)
    scores = cross_val_score(learner, X, y, cv=cv)
    parallel = cross_val_score(learner, X, y, cv=cv, n_jobs=2)
    np.testing.assert_allclose(parallel, scores)
    by_hand = [clone(learner).fit(X[s], y[s]).score(X[q], y[q]) for s, q in cv.split(X, y)]
    np.testing.assert_allclose(scores, by_hand)


class _TensorFinder(pickle.Pickler):
    # Counts the tensors a pickle would hold (without keeping the bytes).
    def __init__(self):
        super().__init__(_NullFile())
        self.found = 0

    def reducer_override(self, obj):
        if isinstance(obj, (torch.Tensor, torch.UntypedStorage, torch.TypedStorage)):
            self.found += 1
        return NotImplemented


class _NullFile:
    def write(self, data):
        return len(data)


def _device_bound_attributes(learner):
    """Attributes pickled as raw tensors, outside skorch's device mapping.

    skorch pickles ``cuda_dependent_attributes_`` with a ``map_location``, so
    a learner fitted on a GPU loads on a machine without one; a tensor
    anywhere else in the state is restored to the device it was saved on.
    """
    if not hasattr(learner, "cuda_dependent_attributes_"):
        return []
    state = learner.__getstate__()
    state.pop("__cuda_dependent_attributes__", None)
    bound = []
    for name, value in state.items():
        finder = _TensorFinder()
        finder.dump(value)
        if finder.found:
            bound.append(name)
    return bound


def check_pickle_round_trip(estimator, tasks, X, y):
    learner = clone(estimator).meta_fit(tasks)
    (support, query), (support_b, _) = _first_episode(learner, X, y)
    # Fitted, re-meta-fitted and fitted again: each step forgets the last
    # task's state, which must stay device-mapped when pickled.
    learner.fit(X[support_b], y[support_b])
    learner.meta_fit(tasks)
    learner.fit(X[support], y[support])
    bound = _device_bound_attributes(learner)
    assert not bound, f"pickled as raw tensors, so tied to the device they were on: {bound}"
    restored = pickle.loads(pickle.dumps(learner))
    if is_classifier(learner):
        np.testing.assert_array_equal(restored.predict(X[query]), learner.predict(X[query]))
    else:
        np.testing.assert_allclose(restored.predict(X[query]), learner.predict(X[query]), rtol=1e-6)
    assert_meta_state_equal(meta_state(learner), meta_state(restored))


def check_feature_mismatch_raises(estimator, tasks, X, y):
    learner = clone(estimator).meta_fit(tasks)
    (support, _), _ = _first_episode(learner, X, y)
    before = meta_state(learner)
    X_wrong = np.hstack([X[support], X[support][:, :1]])
    n = learner.meta_n_features_in_
    try:
        learner.fit(X_wrong, y[support])
    except ValueError as error:
        assert str(n) in str(error) and str(n + 1) in str(error), f"the message names both counts: {error}"
    else:
        raise AssertionError("fit with a different feature count must raise ValueError")
    assert_meta_state_equal(before, meta_state(learner))


def check_bad_input_keeps_meta_state(estimator, tasks, X, y):
    learner = clone(estimator).meta_fit(tasks)
    before = meta_state(learner)
    (support, query), _ = _first_episode(learner, X, y)
    X_nan = X[support].astype(np.float64).copy()
    X_nan[0, 0] = np.nan
    bad_calls = [
        ("NaN", lambda: learner.fit(X_nan, y[support])),
        ("length mismatch", lambda: learner.fit(X[support], y[support][:-1])),
        ("predict before fit", lambda: clone(learner).predict(X[query])),
    ]
    if is_classifier(learner):
        unseen = np.array(y[query], dtype=object)
        unseen[0] = "never-seen-label"
        bad_calls.append(("unseen query label", lambda: learner.fit(X[support], y[support]).score(X[query], unseen)))
    for what, call in bad_calls:
        try:
            call()
        except (ValueError, TypeError, NotFittedError):
            pass
        else:
            raise AssertionError(f"{what} must raise")
        assert_meta_state_equal(before, meta_state(learner))


def check_warm_start_continues(estimator, tasks, X, y):
    learner = clone(estimator).set_params(warm_start=True).meta_fit(tasks)
    epochs = len(learner.history)
    after_first = meta_state(learner)
    learner.meta_fit(tasks)
    assert len(learner.history) == 2 * epochs, "warm start appends to the history"
    changed = any(not torch.equal(after_first[k], v) for k, v in meta_state(learner).items())
    assert changed, "meta-training continued from where it stopped"


def check_meta_fit_is_deterministic(estimator, tasks, X, y):
    a = meta_state(clone(estimator).meta_fit(copy.deepcopy(tasks)))
    b = meta_state(clone(estimator).meta_fit(copy.deepcopy(tasks)))
    assert_meta_state_equal(a, b)


_CHECKS = [
    check_meta_fit_returns_self_unfitted,
    check_clone_keeps_meta_parameters,
    check_fit_leaves_meta_state,
    check_fit_forgets_previous_task,
    check_cross_val_score_uses_meta_fit,
    check_pickle_round_trip,
    check_feature_mismatch_raises,
    check_bad_input_keeps_meta_state,
    check_warm_start_continues,
    check_meta_fit_is_deterministic,
]


def check_meta_estimator(estimator, tasks, X, y):
    """Run every meta-protocol check; raise on the first failure.

    Parameters
    ----------
    estimator : MetaLearner
        Not meta-fitted, with an int ``random_state``.

    tasks : list of Task
        A small meta-training collection (a list, so it can be reused).

    X, y : array-like
        Evaluation data from classes (or functions) unseen in ``tasks``.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta import EpisodeSampler, ProtoNetClassifier
    >>> from skmeta.utils.estimator_checks import check_meta_estimator
    >>> rng = np.random.RandomState(0)
    >>> X, y = rng.randn(120, 4).astype(np.float32), np.repeat(np.arange(12), 10)
    >>> tasks = list(EpisodeSampler(X[:60], y[:60], n_way=3, k_shot=2, n_query=2, n_tasks=4, random_state=0))
    >>> learner = ProtoNetClassifier(max_epochs=1, verbose=0, random_state=0)
    >>> # Meta-fits, clones and pickles the learner many times: seconds, skipped here.
    >>> check_meta_estimator(learner, tasks, X[60:], y[60:])  # doctest: +SKIP
    """
    for name, check in _yield_checks(estimator, tasks, X, y):
        check()


def _yield_checks(estimator, tasks, X, y):
    for check in _CHECKS:
        yield check.__name__, functools.partial(_quiet(check), estimator, tasks, X, y)


def _quiet(check):
    @functools.wraps(check)
    def wrapper(*args):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotMetaFittedWarning)
            return check(*args)

    return wrapper


def parametrize_with_meta_checks(cases):
    """Parametrize a pytest test over meta-learners and the meta-protocol checks.

    The test function takes one argument, ``check``, a callable that runs
    one check on one case; test ids name the estimator and the check.

    Parameters
    ----------
    cases : iterable of tuple
        ``(estimator, tasks, X, y)`` as :func:`check_meta_estimator` takes
        them.

    Returns
    -------
    decorator : pytest.MarkDecorator
        ``pytest.mark.parametrize("check", ...)``.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta import EpisodeSampler, ProtoNetClassifier
    >>> from skmeta.utils.estimator_checks import parametrize_with_meta_checks
    >>> rng = np.random.RandomState(0)
    >>> X, y = rng.randn(120, 4).astype(np.float32), np.repeat(np.arange(12), 10)
    >>> tasks = list(EpisodeSampler(X[:60], y[:60], n_way=3, k_shot=2, n_query=2, n_tasks=4, random_state=0))
    >>> @parametrize_with_meta_checks([(ProtoNetClassifier(max_epochs=1, verbose=0, random_state=0),
    ...                                 tasks, X[60:], y[60:])])
    ... def test_meta_protocol(check):
    ...     check()
    """
    import pytest

    params, ids = [], []
    for estimator, tasks, X, y in cases:
        for name, check in _yield_checks(estimator, tasks, X, y):
            params.append(check)
            ids.append(f"{type(estimator).__name__}-{name}")
    return pytest.mark.parametrize("check", params, ids=ids)
