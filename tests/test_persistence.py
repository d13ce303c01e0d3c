"""The weights-only route of docs/reliability.md: save_params, then
load_params (torch.load with weights_only=True) into a learner rebuilt by a
meta_fit of zero epochs."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skmeta import EpisodeSampler, MetaSGDClassifier, ProtoNetClassifier, RelationNetworkClassifier
from skmeta.utils.estimator_checks import assert_meta_state_equal, meta_state

X, Y = load_digits(return_X_y=True)
X = X / 16
TASKS = EpisodeSampler(X[Y < 6], Y[Y < 6], n_way=4, k_shot=1, n_query=5, n_tasks=10, random_state=0)
NEW = Y >= 6
TINY = dict(module__hidden_sizes=(16,), verbose=0, random_state=0)


@pytest.mark.parametrize(
    "make, extra_modules",
    [
        (lambda **kw: ProtoNetClassifier(module__out_features=8, **TINY, **kw), ()),
        (lambda **kw: RelationNetworkClassifier(module__out_features=8, relation__hidden_sizes=(8, 4), **TINY, **kw),
         ("relation",)),
        (lambda **kw: MetaSGDClassifier(inner_lr=0.1, **TINY, **kw), ("inner_lrs",)),
    ],
)
def test_weights_only_round_trip(tmp_path, make, extra_modules):
    learner = make(max_epochs=2).meta_fit(TASKS)
    files = {"f_params": tmp_path / "params.pt", **{f"f_{name}": tmp_path / f"{name}.pt" for name in extra_modules}}
    learner.save_params(**files)

    restored = make(max_epochs=0).meta_fit(TASKS)
    restored.load_params(**files)
    restored.set_params(max_epochs=2)
    assert_meta_state_equal(meta_state(restored), meta_state(learner))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # restored as saved: no changed-parameter warning
        restored.fit(X[NEW][:8], Y[NEW][:8])
    learner.fit(X[NEW][:8], Y[NEW][:8])
    np.testing.assert_array_equal(restored.predict_proba(X[NEW]), learner.predict_proba(X[NEW]))
