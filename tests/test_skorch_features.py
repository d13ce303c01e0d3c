"""The skorch features a meta-learner supports, each exercised as a user
would (docs/contract.md lists them), and the defects the contract's adapter
to skorch once had."""

import inspect
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from skorch.callbacks import Checkpoint, EarlyStopping, EpochScoring, LoadInitState, LRScheduler, ProgressBar

from conftest import subspace_tasks
from skmeta import MAMLClassifier, ProtoNetClassifier
from skmeta.base import NotMetaFittedWarning
from skmeta.callbacks import EpisodeScoring
from skmeta.model_selection import EpisodicSplit
from skmeta.modules import Conv4

TASKS, X_NEW, Y_NEW = subspace_tasks()
PARAMS = dict(module__hidden_sizes=(32,), module__out_features=16, max_epochs=3, lr=3e-3, verbose=0,
              random_state=0)
SUPPORT = np.r_[0:2, 20:22, 40:42]
QUERY = np.r_[5:15, 25:35, 45:55]


def _learner(**params):
    return ProtoNetClassifier(**{**PARAMS, **params})


def test_accuracy_is_recorded_higher_is_better():
    learner = _learner(max_epochs=4).meta_fit(TASKS[:30], val_tasks=TASKS[30:40])
    valid = learner.history[:, "valid_acc"]
    best = learner.history[:, "valid_acc_best"]
    # The epoch marked best is the one with the highest accuracy so far.
    running = np.maximum.accumulate(valid)
    assert best == [v == r and (i == 0 or v > running[i - 1]) for i, (v, r) in enumerate(zip(valid, running))]
    assert learner.history[:, "train_acc_best"][0]


def test_checkpoint_on_valid_acc_keeps_the_best_model(tmp_path):
    checkpoint = Checkpoint(monitor="valid_acc_best", dirname=str(tmp_path), f_params="best.pt",
                            f_optimizer=None, f_criterion=None, f_history=None, load_best=True)
    learner = _learner(max_epochs=4, callbacks=[checkpoint]).meta_fit(TASKS[:30], val_tasks=TASKS[30:40])
    best_epoch = int(np.argmax(learner.history[:, "valid_acc"]))
    assert learner.history[best_epoch, "event_cp"] is True


def test_save_params_load_params_into_a_fresh_learner(tmp_path):
    saved = _learner().meta_fit(TASKS)
    saved.save_params(f_params=tmp_path / "params.pt")
    fresh = _learner(input_shape=(X_NEW.shape[1],))
    fresh.initialize()
    fresh.load_params(f_params=tmp_path / "params.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotMetaFittedWarning)  # it is meta-fitted: no warning
        fresh.fit(X_NEW[SUPPORT], Y_NEW[SUPPORT])
    saved.fit(X_NEW[SUPPORT], Y_NEW[SUPPORT])
    np.testing.assert_array_equal(fresh.predict_proba(X_NEW[QUERY]), saved.predict_proba(X_NEW[QUERY]))


def test_save_params_load_params_conv4_needs_no_input_shape(tmp_path):
    images = np.random.RandomState(0).rand(40, 1, 28, 28).astype(np.float32)
    labels = np.repeat(np.arange(8), 5)
    from skmeta import EpisodeSampler

    tasks = list(EpisodeSampler(images, labels, n_way=2, k_shot=1, n_query=2, n_tasks=2, random_state=0))
    saved = ProtoNetClassifier(Conv4, module__hidden_channels=4, max_epochs=1, verbose=0, random_state=0).meta_fit(tasks)
    saved.save_params(f_params=tmp_path / "conv.pt")
    fresh = ProtoNetClassifier(Conv4, module__hidden_channels=4, verbose=0, random_state=0).initialize()
    fresh.load_params(f_params=tmp_path / "conv.pt")
    assert fresh.meta_input_shape_ == (1, 28, 28)
    a = saved.fit(images[:4], labels[:4]).predict_proba(images[4:10])
    b = fresh.fit(images[:4].reshape(4, -1), labels[:4]).predict_proba(images[4:10].reshape(6, -1))
    np.testing.assert_array_equal(a, b)


def test_initialize_without_data_names_what_is_missing():
    with pytest.raises(ValueError, match="input_shape"):
        _learner().initialize()


def test_get_params_holds_no_bound_method_after_meta_fit():
    learner = _learner().meta_fit(TASKS[:10])
    params = learner.get_params()
    assert not any(inspect.ismethod(value) for value in params.values()), "a bound method in get_params"
    twin = type(learner)(**learner.get_params(deep=False))
    assert twin.get_params(deep=False).keys() == learner.get_params(deep=False).keys()
    assert "<bound method" not in learner._repr_html_()


def test_forward_returns_the_network_output():
    learner = _learner().meta_fit(TASKS[:10])
    out = learner.forward(X_NEW[:7])
    assert out.shape == (7, 16)
    expected = learner.transform(X_NEW[:7])
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_epoch_scoring_is_refused_and_episode_scoring_works():
    with pytest.raises(TypeError, match="EpisodeScoring"):
        _learner(callbacks=[EpochScoring("accuracy")]).meta_fit(TASKS[:10], val_tasks=TASKS[10:14])
    learner = _learner(callbacks=[EpisodeScoring("accuracy")]).meta_fit(TASKS[:20], val_tasks=TASKS[20:30])
    # The callback's accuracy is the validation tasks' query accuracy after adaptation.
    np.testing.assert_allclose(learner.history[:, "valid_accuracy"], learner.history[:, "valid_acc"], atol=1e-12)
    assert not learner.__sklearn_is_fitted__(), "scoring forgets the tasks it adapted to"


def test_episode_scoring_drives_early_stopping():
    learner = _learner(max_epochs=30, callbacks=[
        EpisodeScoring("neg_log_loss"),
        # No epoch improves the score by 10: stopping after patience + 1 epochs
        # shows that EarlyStopping reads the callback's score.
        EarlyStopping(monitor="valid_neg_log_loss", lower_is_better=False, patience=2, threshold=10,
                      threshold_mode="abs"),
    ]).meta_fit(TASKS[:20], val_tasks=TASKS[20:30])
    assert len(learner.history) == 3


def test_verbose_with_a_user_progress_bar_shows_one_bar():
    learner = _learner(verbose=1, callbacks=[ProgressBar()], input_shape=(24,)).initialize()
    bars = [name for name, cb in learner.callbacks_ if isinstance(cb, ProgressBar)]
    assert len(bars) == 1
    assert len([cb for _, cb in _learner(verbose=1, input_shape=(24,)).initialize().callbacks_
                if isinstance(cb, ProgressBar)]) == 1


def test_grid_search_refit_warns_at_once():
    learner = _learner().meta_fit(TASKS[:10])
    search = GridSearchCV(learner, {"distance": ["sqeuclidean", "cosine"]},
                          cv=EpisodicSplit(n_way=3, k_shot=1, n_query=3, n_episodes=2, random_state=0))
    with pytest.warns(UserWarning, match="refit=False"):
        search.fit(X_NEW, Y_NEW)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        GridSearchCV(learner, {"distance": ["sqeuclidean", "cosine"]}, refit=False,
                     cv=EpisodicSplit(n_way=3, k_shot=1, n_query=3, n_episodes=2, random_state=0)).fit(X_NEW, Y_NEW)


def test_grid_over_a_meta_training_parameter_warns():
    learner = _learner().meta_fit(TASKS[:10])
    search = GridSearchCV(learner, {"lr": [1e-3, 1e-2]}, refit=False,
                          cv=EpisodicSplit(n_way=3, k_shot=1, n_query=3, n_episodes=2, random_state=0))
    with pytest.warns(UserWarning, match="lr changed after meta_fit"):
        search.fit(X_NEW, Y_NEW)


def test_probabilities_are_float64_and_sum_to_one():
    learner = _learner().meta_fit(TASKS[:10]).fit(X_NEW[SUPPORT], Y_NEW[SUPPORT])
    proba = learner.predict_proba(X_NEW[QUERY])
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_parameters_are_checked_in_fit_not_predict():
    with pytest.raises(ValueError, match="distance"):
        ProtoNetClassifier(distance="bad", verbose=0).fit(X_NEW[SUPPORT], Y_NEW[SUPPORT])
    with pytest.raises(ValueError, match="distance"):
        _learner(distance="bad").meta_fit(TASKS[:4])
    with pytest.raises(ValueError, match="precision"):
        _learner(precision="float16").meta_fit(TASKS[:4])
    with pytest.raises(ValueError, match="max_epochs"):
        _learner(max_epochs=-1).meta_fit(TASKS[:4])


def test_dataframe_input_gives_no_warning():
    pd = pytest.importorskip("pandas")
    learner = _learner().meta_fit(TASKS[:10])
    frame = pd.DataFrame(X_NEW)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learner.fit(frame.iloc[SUPPORT], Y_NEW[SUPPORT]).predict(frame.iloc[QUERY])


def test_set_params_of_the_module_keeps_what_was_meta_learned():
    learner = _learner().meta_fit(TASKS[:10])
    before = {k: v.clone() for k, v in learner.module_.state_dict().items()}
    learner.set_params(module__hidden_sizes=(8,))
    after = learner.module_.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert learner.get_params()["module__hidden_sizes"] == (8,)
    learner.set_params(warm_start=False).meta_fit(TASKS[:4])
    assert learner.module_.layers[0].out_features == 8


def test_lr_scheduler_and_warm_start_continue():
    learner = _learner(max_epochs=2, warm_start=True, callbacks=[
        LRScheduler(policy=torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)]).meta_fit(TASKS[:10])
    learner.meta_fit(TASKS[:10])
    assert len(learner.history) == 4
    assert learner.optimizer_.param_groups[0]["lr"] < PARAMS["lr"]


def test_checkpoint_and_load_init_state_resume(tmp_path):
    checkpoint = Checkpoint(dirname=str(tmp_path), monitor=None)
    first = _learner(max_epochs=2, callbacks=[checkpoint, LoadInitState(checkpoint)]).meta_fit(TASKS[:10])
    second = _learner(max_epochs=1, callbacks=[checkpoint, LoadInitState(checkpoint)]).meta_fit(TASKS[:10])
    assert len(second.history) == 3
    assert first.history[-1, "epoch"] == 2


def test_pickle_keeps_meta_state_and_clone_is_independent():
    learner = _learner().meta_fit(TASKS[:10])
    loaded = pickle.loads(pickle.dumps(learner))
    twin = clone(loaded)
    a = learner.fit(X_NEW[SUPPORT], Y_NEW[SUPPORT]).predict_proba(X_NEW[QUERY])
    b = twin.fit(X_NEW[SUPPORT], Y_NEW[SUPPORT]).predict_proba(X_NEW[QUERY])
    np.testing.assert_array_equal(a, b)


def test_maml_forward_is_the_meta_learned_networks_output():
    learner = MAMLClassifier(module__hidden_sizes=(8,), inner_lr=0.3, batch_size=4, max_epochs=1, verbose=0,
                             random_state=0).meta_fit(TASKS[:8])
    out = learner.forward(X_NEW[:3])
    assert out.shape == (3, 5)
