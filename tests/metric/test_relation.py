import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from conftest import make_subspace_classes, subspace_tasks
from skmeta import EpisodeSampler, RelationNetworkClassifier
from skmeta.base import NotMetaFittedWarning
from skmeta.metric.relation import RelationModule
from skmeta.model_selection import EpisodicSplit
from skmeta.utils.estimator_checks import meta_state

TINY = dict(module__hidden_sizes=(16,), module__out_features=8, relation__hidden_sizes=(8,), verbose=0, random_state=0)


TASKS, X_NEW, Y_NEW = subspace_tasks()
LEARNER = dict(module__hidden_sizes=(32,), module__out_features=16, max_epochs=4, lr=3e-3, verbose=0, random_state=0)


@pytest.fixture(scope="module")
def meta_fitted():
    return RelationNetworkClassifier(**LEARNER).meta_fit(TASKS)


def _relation_scores(learner, X_support, y_support, X_query):
    """Relation scores by hand: class means of transform(X_support), each
    next to every query, through the relation module and a sigmoid."""
    z_support, z_query = learner.transform(X_support), learner.transform(X_query)
    classes = np.unique(y_support)
    prototypes = np.stack([z_support[y_support == c].mean(0) for c in classes])
    pairs = np.concatenate(
        [np.repeat(z_query, len(classes), axis=0), np.tile(prototypes, (len(z_query), 1))], axis=1
    )
    with torch.no_grad():
        logits = learner.relation_(torch.as_tensor(pairs)).numpy().reshape(len(z_query), len(classes))
    return 1 / (1 + np.exp(-logits))


def test_predict_proba_is_the_normalised_relation_score(meta_fitted):
    support, query = next(EpisodicSplit(n_way=4, k_shot=3, n_query=5, n_episodes=1, random_state=0).split(X_NEW, Y_NEW))
    scores = _relation_scores(meta_fitted, X_NEW[support], Y_NEW[support], X_NEW[query])
    proba = meta_fitted.fit(X_NEW[support], Y_NEW[support]).predict_proba(X_NEW[query])
    np.testing.assert_allclose(proba, scores / scores.sum(1, keepdims=True), rtol=1e-4)


def test_relation_scores_regress_on_one_hot_labels_of_new_classes():
    # The paper's squared error makes each score a calibrated match
    # probability; the default cross-entropy only needs them to rank.
    meta_fitted = RelationNetworkClassifier(criterion=torch.nn.MSELoss, **LEARNER).meta_fit(TASKS)
    cv = EpisodicSplit(n_way=5, k_shot=2, n_query=10, n_episodes=10, random_state=1)
    match, mismatch = [], []
    for support, query in cv.split(X_NEW, Y_NEW):
        scores = _relation_scores(meta_fitted, X_NEW[support], Y_NEW[support], X_NEW[query])
        is_match = Y_NEW[query][:, None] == np.unique(Y_NEW[support])[None, :]
        match.append(scores[is_match].mean())
        mismatch.append(scores[~is_match].mean())
    # A constant 1 / n_way (0.2) would not separate them at all.
    assert np.mean(match) > 0.5 and np.mean(mismatch) < 0.25, (np.mean(match), np.mean(mismatch))
    assert np.mean(match) - np.mean(mismatch) > 0.4


@pytest.mark.parametrize("k_shot", [1, 5])
def test_one_meta_training_serves_any_k_shot(meta_fitted, k_shot):
    cv = EpisodicSplit(n_way=5, k_shot=k_shot, n_query=10, n_episodes=30, random_state=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotMetaFittedWarning)
        untrained = cross_val_score(RelationNetworkClassifier(**LEARNER), X_NEW, Y_NEW, cv=cv).mean()
    meta = cross_val_score(meta_fitted, X_NEW, Y_NEW, cv=cv).mean()
    assert meta > untrained + 0.3, (meta, untrained)


def test_relation_module_parameters_are_routed_and_instances_are_templates():
    learner = RelationNetworkClassifier(**dict(LEARNER, max_epochs=1), relation__hidden_sizes=(12, 4))
    learner.meta_fit(TASKS[:5])
    assert [m.out_features for m in learner.relation_.modules() if isinstance(m, torch.nn.Linear)] == [12, 4, 1]
    assert learner.relation_.layers[0].in_features == 32  # twice the embedding size

    template = RelationModule(in_features=32, hidden_sizes=(6,))
    before = {k: v.clone() for k, v in template.state_dict().items()}
    learner = RelationNetworkClassifier(**dict(LEARNER, max_epochs=1), relation=template).meta_fit(TASKS[:5])
    assert learner.relation_ is not template
    assert all(torch.equal(v, before[k]) for k, v in template.state_dict().items())
    assert not all(torch.equal(v, before[k]) for k, v in learner.relation_.state_dict().items())


def test_transform_feeds_a_scikit_learn_classifier(meta_fitted):
    cv = EpisodicSplit(n_way=5, k_shot=2, n_query=10, n_episodes=10, random_state=3)
    pipe = make_pipeline(meta_fitted, LogisticRegression(max_iter=500))
    assert cross_val_score(pipe, X_NEW, Y_NEW, cv=cv).mean() > 0.5
    assert any(key.startswith("relation.") for key in meta_state(meta_fitted))


@pytest.mark.parametrize(
    "relation, message",
    [
        (RelationModule(in_features=7), "must take concatenated \\[query, class\\] embeddings of 32 features"),
        (torch.nn.Linear(32, 3), "one relation logit per pair"),
    ],
    ids=["input-size", "output-size"],
)
def test_a_relation_module_of_the_wrong_size_raises_a_clear_error(relation, message):
    learner = RelationNetworkClassifier(**dict(LEARNER, max_epochs=1), relation=relation)
    with pytest.raises(ValueError, match=message):
        learner.meta_fit(TASKS[:2])


def test_cross_entropy_trains_at_many_ways_where_the_papers_mse_stalls():
    # With one matching class in 20, regressing relation scores on one-hot
    # labels is dominated by the 19 zeros; a softmax over the classes' log
    # relation scores makes every class compete for the query.
    X, y = make_subspace_classes()
    train = y < 40
    tasks = list(EpisodeSampler(X[train], y[train], n_way=20, k_shot=1, n_query=2, n_tasks=60, random_state=0))
    cv = EpisodicSplit(n_way=10, k_shot=1, n_query=5, n_episodes=20, random_state=0)
    accuracy = {}
    for criterion in (torch.nn.MSELoss, torch.nn.CrossEntropyLoss):
        learner = RelationNetworkClassifier(criterion=criterion, **LEARNER).meta_fit(tasks)
        accuracy[criterion.__name__] = cross_val_score(learner, X[~train], y[~train], cv=cv).mean()
    assert accuracy["CrossEntropyLoss"] > 0.7, accuracy
    assert accuracy["CrossEntropyLoss"] > accuracy["MSELoss"] + 0.2, accuracy
