import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import GradientNormClipping

from conftest import make_clusters

from skmeta import EpisodeSampler, MANNClassifier
from skmeta.base import NotMetaFittedWarning
from skmeta.memory import MANN, MANNState
from skmeta.memory._memory import content_weights
from skmeta.model_selection import EpisodicSplit
from skmeta.utils.estimator_checks import meta_state

NET = dict(module__controller_size=32, module__memory_rows=16, module__memory_width=8, module__n_reads=1)
TINY = dict(NET, verbose=0, random_state=0)


X_ALL, Y_ALL = make_clusters()
TRAIN = Y_ALL < 40
X_NEW, Y_NEW = X_ALL[~TRAIN], Y_ALL[~TRAIN]
TASKS = list(EpisodeSampler(X_ALL[TRAIN], Y_ALL[TRAIN], n_way=3, k_shot=3, n_query=3, n_tasks=160, random_state=0))
LEARNER = dict(TINY, module__n_way=3, batch_size=8, lr=1e-2, max_epochs=30, callbacks=[GradientNormClipping(10)])


@pytest.fixture(scope="module")
def meta_fitted():
    return MANNClassifier(**LEARNER).meta_fit(TASKS)


def _net(**kwargs):
    torch.manual_seed(0)  # test-local weights; the library never seeds globally
    return MANN(**{"in_features": 6, "n_way": 3, "controller_size": 8, "memory_rows": 10, "memory_width": 5, **kwargs})


# ----------------------------------------------------------------------
# the memory
# ----------------------------------------------------------------------
def test_content_read_puts_mass_on_matching_row():
    rng = np.random.RandomState(0)
    rows = torch.as_tensor(rng.randn(8, 5), dtype=torch.float32)
    memory = rows.unsqueeze(0)
    for target in range(8):
        key = (2.5 * rows[target] + 0.05 * torch.randn(5, generator=torch.Generator().manual_seed(target)))
        weights = content_weights(key.view(1, 1, 5), memory, strength=torch.tensor([[30.0]]))[0, 0]
        assert int(weights.argmax()) == target
        assert float(weights[target]) > 0.9, weights
        read = weights @ rows
        torch.testing.assert_close(read, rows[target], atol=0.2, rtol=0)
    # Strength 1, the paper's plain softmax of cosines, keeps the ranking.
    weights = content_weights(rows[3].view(1, 1, 5), memory)[0, 0]
    assert int(weights.argmax()) == 3 and abs(float(weights.sum()) - 1) < 1e-6


def test_content_lookup_is_by_direction_not_norm():
    rng = np.random.RandomState(1)
    memory = torch.as_tensor(rng.randn(1, 6, 4), dtype=torch.float32)
    key = memory[:, :1] + 0.1
    scaled = memory * torch.tensor([1.0, 50.0, 0.01, 3.0, 7.0, 0.5]).view(1, 6, 1)
    torch.testing.assert_close(content_weights(key, memory, 5.0), content_weights(key, scaled, 5.0))
    torch.testing.assert_close(content_weights(key, memory, 5.0), content_weights(3 * key, memory, 5.0))


def test_empty_rows_match_nothing():
    memory = torch.zeros(1, 4, 3)
    memory[0, 1] = torch.tensor([1.0, 0.0, 0.0])
    weights = content_weights(torch.tensor([[[-1.0, 0.0, 0.0]]]), memory, 4.0)[0, 0]
    # Cosine 0 with the empty rows beats cosine -1 with the opposite one.
    assert weights[1] < weights[0] and torch.allclose(weights[[0, 2, 3]], weights[0].expand(3))


def test_write_erases_and_fills_only_the_least_used_row():
    net = _net(n_reads=1)
    rng = np.random.RandomState(2)
    state = net.initial_state(1)
    usage = torch.tensor([[3.0, 2.0, 5.0, 0.5, 4.0, 1.0, 2.5, 6.0, 1.5, 3.5]])  # row 3 least used
    memory = torch.as_tensor(rng.randn(1, 10, 5) * 10, dtype=torch.float32)
    # No rows read at the previous step: the write goes to the least-used row only.
    state = state._replace(memory=memory, usage=usage)
    with torch.no_grad():
        _, after = net.step(torch.as_tensor(rng.randn(1, 6), dtype=torch.float32), state)
    others = [i for i in range(10) if i != 3]
    assert torch.equal(after.memory[0, others], memory[0, others])
    # Erased, then written with a tanh vector scaled by (1 - gate) <= 1.
    assert float(after.memory[0, 3].abs().max()) <= 1.0
    assert float(after.memory[0, 3].abs().max()) > 0.0
    # Usage decays and adds this step's read weights and write weights; the
    # write weights sit on row 3 alone.
    written = after.usage - 0.95 * usage - after.read_weights.sum(1)
    torch.testing.assert_close(written[0, others], torch.zeros(9), atol=1e-6, rtol=0)
    assert 0 < float(written[0, 3]) <= 1


def test_label_of_step_t_is_not_visible_at_step_t():
    net = _net(n_reads=2)
    X = torch.randn(1, 7, 6, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([[0, 1, 2, 0, 1, 2, 0]])
    for t in range(6):
        changed = y.clone()
        changed[0, t] = (y[0, t] + 1) % 3
        with torch.no_grad():
            logits, _ = net(X, y)
            logits_changed, _ = net(X, changed)
        # Steps up to t never saw y[t]; the next step does.
        assert torch.equal(logits[:, : t + 1], logits_changed[:, : t + 1])
        assert not torch.allclose(logits[:, t + 1], logits_changed[:, t + 1])


def test_forward_leaves_the_last_label_pending():
    net = _net()
    X = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 1]])
    with torch.no_grad():
        _, state = net(X, y)
        logits_split, _ = net(X[:, 2:], y[:, 2:], state=net(X[:, :2], y[:, :2])[1])
        logits_whole, _ = net(X, y)
    assert isinstance(state, MANNState)
    torch.testing.assert_close(state.label, torch.nn.functional.one_hot(y[:, -1], 3).float())
    torch.testing.assert_close(logits_split, logits_whole[:, 2:])


def test_network_sizes_are_module_parameters():
    learner = MANNClassifier(
        module__controller_size=12, module__memory_rows=9, module__memory_width=7, module__n_reads=3,
        module__n_way=4, max_epochs=1, verbose=0, random_state=0,
    ).meta_fit(TASKS[:2])
    state = learner.fit(X_NEW[:8], Y_NEW[:8] % 4).memory_state_
    assert state.memory.shape == (1, 9, 7) and state.reads.shape == (1, 3, 7)
    assert state.h.shape == (1, 12) and state.label.shape == (1, 4)
    with pytest.raises(ValueError, match="n_reads=3 heads need at least as many memory rows"):
        MANN(in_features=4, memory_rows=2, n_reads=3)


# ----------------------------------------------------------------------
# the estimator
# ----------------------------------------------------------------------
def test_meta_fit_beats_untrained_initialisation(meta_fitted):
    cv = EpisodicSplit(n_way=3, k_shot=1, n_query=10, n_episodes=40, random_state=1)
    meta = cross_val_score(meta_fitted, X_NEW, Y_NEW, cv=cv).mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotMetaFittedWarning)
        untrained = cross_val_score(MANNClassifier(**LEARNER), X_NEW, Y_NEW, cv=cv).mean()
    assert meta > 0.6 and meta > untrained + 0.2, (meta, untrained)


def test_first_instance_is_guessed_later_instances_are_recalled(meta_fitted):
    # Santoro et al.'s curve on new classes. The label of a class's first
    # appearance cannot be known, only guessed among the labels not shown
    # yet: for 3 classes at best (1/3 + 1/2 + 1) / 3 = 0.61 on average.
    # Later appearances are recalled from memory.
    rng = np.random.RandomState(3)
    by_instance = {1: [], 3: [], 4: []}
    for task in EpisodeSampler(X_NEW, Y_NEW, n_way=3, k_shot=4, n_query=1, n_tasks=100, random_state=4):
        order = rng.permutation(len(task.y_support))
        X, y = np.asarray(task.X_support)[order], np.asarray(task.y_support)[order]
        correct = meta_fitted.predict_proba_sequence(X, y).argmax(1) == y
        seen = np.array([np.sum(y[: i + 1] == y[i]) for i in range(len(y))])
        for k in by_instance:
            by_instance[k].extend(correct[seen == k])
    first, later = np.mean(by_instance[1]), np.mean(by_instance[3] + by_instance[4])
    assert first < 0.62 and later > first + 0.1, (first, later)


def test_predict_is_the_next_step_after_the_support_sequence(meta_fitted):
    support, query = next(EpisodicSplit(n_way=3, k_shot=3, n_query=4, n_episodes=1, random_state=5).split(X_NEW, Y_NEW))
    learner = clone(meta_fitted).fit(X_NEW[support], Y_NEW[support])
    order = support[learner.support_order_]
    proba = learner.predict_proba(X_NEW[query])
    for i, q in enumerate(query):
        # Any label for the query: it is revealed only after its own step.
        sequence = np.concatenate([order, [q]])
        online = learner.predict_proba_sequence(X_NEW[sequence], np.append(Y_NEW[order], Y_NEW[support[0]]))
        np.testing.assert_allclose(online[-1], proba[i], rtol=1e-5, atol=1e-6)


def test_queries_are_independent_of_each_other(meta_fitted):
    support, query = next(EpisodicSplit(n_way=3, k_shot=2, n_query=6, n_episodes=1, random_state=6).split(X_NEW, Y_NEW))
    learner = clone(meta_fitted).fit(X_NEW[support], Y_NEW[support])
    together = learner.predict_proba(X_NEW[query])
    reversed_order = learner.predict_proba(X_NEW[query[::-1]])[::-1]
    one_by_one = np.vstack([learner.predict_proba(X_NEW[[q]]) for q in query])
    np.testing.assert_allclose(reversed_order, together, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(one_by_one, together, rtol=1e-5, atol=1e-7)
    # Predicting leaves the support memory as fit left it.
    before = learner.memory_state_
    learner.predict(X_NEW[query])
    assert all(torch.equal(a, b) for a, b in zip(before, learner.memory_state_))


def test_fit_does_not_depend_on_the_order_support_is_given_in(meta_fitted):
    support, query = next(EpisodicSplit(n_way=3, k_shot=3, n_query=5, n_episodes=1, random_state=7).split(X_NEW, Y_NEW))
    shuffled = np.random.RandomState(0).permutation(support)
    a = clone(meta_fitted).fit(X_NEW[support], Y_NEW[support])
    b = clone(meta_fitted).fit(X_NEW[shuffled], Y_NEW[shuffled])
    np.testing.assert_array_equal(support[a.support_order_], shuffled[b.support_order_])
    np.testing.assert_allclose(a.predict_proba(X_NEW[query]), b.predict_proba(X_NEW[query]), rtol=1e-6)


def test_random_state_sets_the_support_presentation_order(meta_fitted):
    support, _ = next(EpisodicSplit(n_way=3, k_shot=4, n_query=1, n_episodes=1, random_state=8).split(X_NEW, Y_NEW))
    orders = {}
    for seed in (0, 1):
        learner = clone(meta_fitted).set_params(random_state=seed)
        with warnings.catch_warnings():
            # random_state is read at adaptation: changing it is no mistake.
            warnings.simplefilter("error")
            orders[seed] = learner.fit(X_NEW[support], Y_NEW[support]).support_order_
        again = learner.fit(X_NEW[support], Y_NEW[support]).support_order_
        np.testing.assert_array_equal(orders[seed], again)
        assert sorted(orders[seed]) == list(range(len(support)))
    assert not np.array_equal(orders[0], orders[1])


def test_more_classes_than_output_units_raises(meta_fitted):
    X, y = X_NEW[:80], Y_NEW[:80]  # 4 classes, 3 output units
    with pytest.raises(ValueError, match=r"4 classes, but MANNClassifier's network has 3 output units \(module__n_way=3\)"):
        meta_fitted.fit(X, y)
    assert not hasattr(meta_fitted, "classes_")
    with pytest.raises(ValueError, match="4 classes.*3 output units"):
        meta_fitted.predict_proba_sequence(X, y)
    too_wide = list(EpisodeSampler(X_NEW, Y_NEW, n_way=4, k_shot=1, n_query=1, n_tasks=1, random_state=0))
    with pytest.raises(ValueError, match="a meta-training task has 4 classes.*3 output units"):
        clone(meta_fitted).set_params(warm_start=True).partial_meta_fit(too_wide)


def test_predict_proba_sequence_needs_meta_fit():
    with pytest.raises(Exception, match="not meta-fitted"):
        MANNClassifier(**TINY).predict_proba_sequence(X_NEW[:4], Y_NEW[:4])


def test_pipeline_with_scaler_keeps_meta_fit(meta_fitted):
    cv = EpisodicSplit(n_way=3, k_shot=2, n_query=5, n_episodes=10, random_state=9)
    pipe = make_pipeline(StandardScaler(), meta_fitted)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotMetaFittedWarning)
        scores = cross_val_score(pipe, X_NEW, Y_NEW, cv=cv)
    assert scores.shape == (10,) and scores.mean() > 0.5


def test_bfloat16_agrees_with_float32(meta_fitted):
    support, query = next(EpisodicSplit(n_way=3, k_shot=2, n_query=10, n_episodes=1, random_state=10).split(X_NEW, Y_NEW))
    exact = clone(meta_fitted).fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[query])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # precision is not an adaptation parameter
        fast = clone(meta_fitted).set_params(precision="bfloat16").fit(X_NEW[support], Y_NEW[support])
    np.testing.assert_allclose(fast.predict_proba(X_NEW[query]), exact, atol=0.1)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda l: l.fit(X_NEW[:10, :5], Y_NEW[:10]), "features"),
        (lambda l: l.fit(np.full((10, 16), np.nan), Y_NEW[:10]), "NaN"),
        (lambda l: l.fit(X_NEW[:10], Y_NEW[:9]), "inconsistent numbers of samples"),
        (lambda l: clone(l).predict(X_NEW[:3]), "not fitted"),
        (lambda l: l.fit(X_NEW[:10], Y_NEW[:10]).score(X_NEW[10:20], Y_NEW[10:20] + 1000), "absent from the support set"),
        (lambda l: l.predict_proba_sequence(X_NEW[:10, :5], Y_NEW[:10]), "features"),
        (lambda l: l.predict_proba_sequence(X_NEW[:10], Y_NEW[:10] + 0.5), "Unknown label type"),
    ],
    ids=["feature-count", "nan", "length", "unfitted", "unseen-query-label", "sequence-features", "sequence-continuous"],
)
def test_bad_input_raises_and_keeps_meta_state(meta_fitted, call, message):
    before = meta_state(meta_fitted)
    with pytest.raises((ValueError, TypeError), match=message):
        call(meta_fitted)
    for key, value in meta_state(meta_fitted).items():
        assert torch.equal(value, before[key])
