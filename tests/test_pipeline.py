import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from conftest import make_subspace_classes
from skmeta import EpisodeSampler, ProtoNetClassifier
from skmeta.base import NotMetaFittedWarning
from skmeta.model_selection import EpisodicSplit
from skmeta.pipeline import MetaPipeline, make_meta_pipeline
from skmeta.tasks import Task
from skmeta.utils.estimator_checks import meta_state


def _family():
    """Subspace classes on features of wildly different offsets and scales:
    unscaled, a few features dominate every distance."""
    X, y = make_subspace_classes(n_classes=50, n_features=12)
    rng = np.random.RandomState(0)
    X = X * np.exp(rng.uniform(-3, 5, X.shape[1])) + rng.uniform(-1e3, 1e3, X.shape[1])
    train = y < 35
    return X[train], y[train], X[~train], y[~train]


X_TRAIN, Y_TRAIN, X_NEW, Y_NEW = _family()
LEARNER = dict(module__hidden_sizes=(32,), module__out_features=16, max_epochs=3, lr=3e-3, verbose=0, random_state=0)


def _tasks(n_tasks=60, random_state=0):
    return EpisodeSampler(X_TRAIN, Y_TRAIN, n_way=5, k_shot=2, n_query=5, n_tasks=n_tasks, random_state=random_state)


@pytest.fixture(scope="module")
def pipe():
    return make_meta_pipeline(StandardScaler(), ProtoNetClassifier(**LEARNER)).meta_fit(_tasks())


def test_scaler_is_fitted_once_on_the_meta_training_rows_and_frozen(pipe):
    name, step = pipe.steps[0]
    assert name == "standardscaler" and isinstance(step, FrozenEstimator)
    assert pipe.meta_frozen_steps_ == ("standardscaler",)
    rows = np.concatenate([np.concatenate([t.X_support.numpy(), t.X_query.numpy()]) for t in _tasks()])
    np.testing.assert_allclose(step.estimator.mean_, rows.mean(0), rtol=1e-4)


def test_scaler_given_the_pool_uses_it():
    pipe = make_meta_pipeline(StandardScaler(), ProtoNetClassifier(**dict(LEARNER, max_epochs=1)))
    pipe.meta_fit(_tasks(10), X_pool=X_TRAIN)
    np.testing.assert_allclose(pipe[0].estimator.mean_, X_TRAIN.mean(0), rtol=1e-6)


def test_adaptation_does_not_refit_the_scaler(pipe):
    scaler = pipe[0].estimator
    mean, scale = scaler.mean_.copy(), scaler.scale_.copy()
    support, query = next(EpisodicSplit(n_way=5, k_shot=1, n_query=5, random_state=0).split(X_NEW, Y_NEW))
    pipe.fit(X_NEW[support], Y_NEW[support]).predict(X_NEW[query])
    assert pipe[0].estimator is scaler
    np.testing.assert_array_equal(scaler.mean_, mean)
    np.testing.assert_array_equal(scaler.scale_, scale)


def test_meta_level_scaler_beats_a_scaler_refitted_on_each_support_set(pipe):
    # 5-way 1-shot: a plain pipeline re-fits the scaler on 5 rows per task.
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=10, n_episodes=40, random_state=1)
    frozen = cross_val_score(pipe, X_NEW, Y_NEW, cv=cv).mean()
    refitted = cross_val_score(make_pipeline(StandardScaler(), pipe[-1]), X_NEW, Y_NEW, cv=cv).mean()
    assert frozen > refitted + 0.05, (frozen, refitted)


def test_cross_val_score_with_episodic_split_matches_adaptation_by_hand(pipe):
    cv = EpisodicSplit(n_way=5, k_shot=2, n_query=5, n_episodes=6, random_state=2)
    scores = cross_val_score(pipe, X_NEW, Y_NEW, cv=cv)
    parallel = cross_val_score(pipe, X_NEW, Y_NEW, cv=cv, n_jobs=2)
    by_hand = [clone(pipe).fit(X_NEW[s], Y_NEW[s]).score(X_NEW[q], Y_NEW[q]) for s, q in cv.split(X_NEW, Y_NEW)]
    np.testing.assert_allclose(scores, by_hand)
    np.testing.assert_allclose(parallel, scores)


def test_clone_keeps_frozen_preprocessing_and_meta_parameters(pipe):
    twin = clone(pipe)
    assert isinstance(twin, MetaPipeline) and twin.meta_frozen_steps_ == pipe.meta_frozen_steps_
    assert twin[0] is pipe[0]  # a frozen estimator clones to itself
    assert twin[-1] is not pipe[-1]
    for key, value in meta_state(pipe[-1]).items():
        assert torch.equal(meta_state(twin[-1])[key], value)


def test_meta_fit_again_refits_the_preprocessing_it_froze():
    pipe = make_meta_pipeline(StandardScaler(), ProtoNetClassifier(**dict(LEARNER, max_epochs=1)))
    pipe.meta_fit(_tasks(10), X_pool=X_TRAIN)
    pipe.meta_fit(_tasks(10), X_pool=X_TRAIN[:50])
    assert isinstance(pipe[0], FrozenEstimator)
    np.testing.assert_allclose(pipe[0].estimator.mean_, X_TRAIN[:50].mean(0), rtol=1e-6)


def test_a_frozen_step_given_by_the_user_is_kept():
    scaler = StandardScaler().fit(X_TRAIN[:20])
    pipe = make_meta_pipeline(FrozenEstimator(scaler), ProtoNetClassifier(**dict(LEARNER, max_epochs=1)))
    pipe.meta_fit(_tasks(10))
    assert pipe[0].estimator is scaler and pipe.meta_frozen_steps_ == ()


def test_partial_meta_fit_keeps_the_preprocessing_and_continues(pipe):
    twin = clone(pipe)
    scaler, epochs = twin[0], len(twin[-1].history)
    twin.partial_meta_fit(_tasks(10, random_state=5), epochs=1, X_pool=X_TRAIN[:10])
    assert twin[0] is scaler and len(twin[-1].history) == epochs + 1


def test_warm_started_learner_keeps_the_preprocessing():
    pipe = make_meta_pipeline(StandardScaler(), ProtoNetClassifier(**dict(LEARNER, max_epochs=1, warm_start=True)))
    pipe.meta_fit(_tasks(10), X_pool=X_TRAIN)
    scaler = pipe[0]
    pipe.meta_fit(_tasks(10), X_pool=X_TRAIN[:50])
    assert pipe[0] is scaler and len(pipe[-1].history) == 2


def test_grid_search_tunes_the_adapted_learner_without_meta_training(pipe):
    before = meta_state(pipe[-1])
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=5, n_episodes=5, random_state=3)
    search = GridSearchCV(pipe, {"protonetclassifier__distance": ["sqeuclidean", "cosine"]}, cv=cv, refit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotMetaFittedWarning)
        search.fit(X_NEW, Y_NEW)
    assert len(search.cv_results_["mean_test_score"]) == 2
    for key, value in meta_state(pipe[-1]).items():
        assert torch.equal(value, before[key])


def test_pickle_round_trip(pipe):
    support, query = next(EpisodicSplit(n_way=5, k_shot=2, n_query=5, random_state=4).split(X_NEW, Y_NEW))
    fitted = clone(pipe).fit(X_NEW[support], Y_NEW[support])
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict(X_NEW[query]), fitted.predict(X_NEW[query]))


def _nominal_family(n_classes=20, n_per_class=12, random_state=0):
    """Classes told apart by one nominal feature (a colour) and a numeric one
    on a large scale: the encoder and the scaler both matter."""
    rng = np.random.RandomState(random_state)
    colours = np.array(["red", "green", "blue", "amber"])
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = np.empty((len(y), 2), dtype=object)
    X[:, 0] = colours[y % 4]
    X[:, 1] = 1000 + 100 * (y // 4) + rng.randn(len(y)) * 5.0
    return X, y


def test_column_transformer_with_nominal_features():
    X, y = _nominal_family()
    train = y < 12
    tasks = [Task(X[train][s], y[train][s], X[train][q], y[train][q])
             for s, q in EpisodicSplit(n_way=4, k_shot=2, n_query=4, n_episodes=40, random_state=0)
             .split(X[train], y[train])]
    encode = ColumnTransformer([
        ("colour", OneHotEncoder(handle_unknown="ignore", sparse_output=False), [0]),
        ("numeric", StandardScaler(), [1]),
    ])
    pipe = make_meta_pipeline(encode, ProtoNetClassifier(**dict(LEARNER, max_epochs=5)))
    pipe.meta_fit(tasks)
    assert pipe[0].estimator.transform(X[:2]).shape == (2, 5)
    cv = EpisodicSplit(n_way=4, k_shot=1, n_query=5, n_episodes=20, random_state=1)
    assert cross_val_score(pipe, X[~train], y[~train], cv=cv).mean() > 0.8


def test_sparse_preprocessing_output_is_refused():
    X, y = _nominal_family()
    tasks = [Task(X[s], y[s], X[q], y[q]) for s, q in
             EpisodicSplit(n_way=3, k_shot=1, n_query=2, n_episodes=3, random_state=0).split(X, y)]
    pipe = make_meta_pipeline(OneHotEncoder(handle_unknown="ignore"), ProtoNetClassifier(**LEARNER))
    with pytest.raises(TypeError, match="sparse matrix.*sparse_output=False"):
        pipe.meta_fit(tasks)


def test_last_step_must_be_a_meta_learner():
    pipe = MetaPipeline([("scale", StandardScaler()), ("scale2", StandardScaler())])
    with pytest.raises(TypeError, match="must be a meta-learner.*StandardScaler"):
        pipe.meta_fit(_tasks(2))


def test_one_shot_iterator_of_tasks_is_read_once():
    pipe = make_meta_pipeline(StandardScaler(), ProtoNetClassifier(**dict(LEARNER, max_epochs=1)))
    pipe.meta_fit(iter(list(_tasks(8))))
    assert len(pipe[-1].history) == 1 and isinstance(pipe[0], FrozenEstimator)


def test_empty_task_collection_raises():
    with pytest.raises(ValueError, match="empty"):
        make_meta_pipeline(StandardScaler(), ProtoNetClassifier(**LEARNER)).meta_fit([])


def test_make_meta_pipeline_names_steps_like_make_pipeline():
    steps = (StandardScaler(), ProtoNetClassifier())
    assert [n for n, _ in make_meta_pipeline(*steps).steps] == [n for n, _ in make_pipeline(*steps).steps]
    assert isinstance(make_meta_pipeline(*steps), Pipeline)


# ----------------------------------------------------------------------
# bad task collections, endless samplers, named columns
# ----------------------------------------------------------------------
@pytest.mark.parametrize("tasks", ["abc", 5, None, [1, 2]])
def test_meta_fit_on_something_else_than_tasks_is_a_type_error(tasks):
    pipe = make_meta_pipeline(StandardScaler(), ProtoNetClassifier(**LEARNER))
    with pytest.raises(TypeError, match="skmeta.tasks.Task"):
        pipe.meta_fit(tasks)
    with pytest.raises(TypeError, match="skmeta.tasks.Task"):
        pipe.partial_meta_fit(tasks)


def test_endless_sampler_without_pool_is_a_value_error():
    endless = EpisodeSampler(X_TRAIN, Y_TRAIN, n_way=5, k_shot=2, n_query=5, n_tasks=None, random_state=0)
    pipe = make_meta_pipeline(StandardScaler(), ProtoNetClassifier(**LEARNER))
    with pytest.raises(ValueError, match="endless.*X_pool"):
        pipe.meta_fit(endless)
    assert not hasattr(pipe, "meta_frozen_steps_")


def test_dataframe_pool_keeps_column_names_without_warnings():
    pd = pytest.importorskip("pandas")
    columns = [f"feature_{i}" for i in range(X_TRAIN.shape[1])]
    pipe = make_meta_pipeline(StandardScaler(), ProtoNetClassifier(**dict(LEARNER, max_epochs=1)))
    cv = EpisodicSplit(n_way=5, k_shot=1, n_query=5, n_episodes=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # feature-name warnings, once per task before
        pipe.meta_fit(_tasks(20), X_pool=pd.DataFrame(X_TRAIN, columns=columns))
        scores = cross_val_score(pipe, pd.DataFrame(X_NEW, columns=columns), Y_NEW, cv=cv)
    assert list(pipe[0].feature_names_in_) == columns
    # Named or not, the task rows are transformed the same way.
    unnamed = make_meta_pipeline(StandardScaler(), ProtoNetClassifier(**dict(LEARNER, max_epochs=1)))
    unnamed.meta_fit(_tasks(20), X_pool=X_TRAIN)
    np.testing.assert_array_equal(scores, cross_val_score(unnamed, X_NEW, Y_NEW, cv=cv))


def test_dataframe_pool_with_columns_selected_by_name():
    pd = pytest.importorskip("pandas")
    columns = [f"feature_{i}" for i in range(X_TRAIN.shape[1])]
    scale_some = ColumnTransformer([("scale", StandardScaler(), columns[:6])], remainder="passthrough")
    pipe = make_meta_pipeline(scale_some, ProtoNetClassifier(**dict(LEARNER, max_epochs=1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe.meta_fit(_tasks(10), X_pool=pd.DataFrame(X_TRAIN, columns=columns))
        cv = EpisodicSplit(n_way=5, k_shot=1, n_query=5, n_episodes=2, random_state=0)
        scores = cross_val_score(pipe, pd.DataFrame(X_NEW, columns=columns), Y_NEW, cv=cv)
    assert scores.shape == (2,)
