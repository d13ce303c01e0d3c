import re

import pytest

from skmeta._recipes import RECIPES
from skmeta.cli import LEARNERS, main


def test_main_job_on_embedded_data_reports_accuracy_with_interval(capsys):
    assert main(["--max-epochs", "2", "--tasks-per-epoch", "30", "--episodes", "40", "-q"]) == 0
    out = capsys.readouterr().out
    learned = re.search(r"ProtoNetClassifier: ([\d.]+) \+- ([\d.]+) % \(5-way 1-shot, 40 episodes\)", out)
    floor = re.search(r"1-NN on raw features: ([\d.]+) \+- ([\d.]+) %", out)
    assert learned and floor, out
    # The embedded family is one where the learned metric beats raw features.
    assert float(learned.group(1)) > float(floor.group(1)) + 10


def test_main_job_on_omniglot_holds_out_alphabets(omniglot_path, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SKMETA_DATA", str(tmp_path))
    args = ["--omniglot", str(omniglot_path), "--max-epochs", "1", "--tasks-per-epoch", "10",
            "--episodes", "10", "--precision", "float32", "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "meta-training on 178 classes, testing on 64 unseen classes" in out
    assert re.search(r"ProtoNetClassifier: [\d.]+ \+- [\d.]+ %", out)


def test_protonet_recipe_distorts_omniglot_images_only(omniglot_path, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SKMETA_DATA", str(tmp_path))
    args = ["--omniglot", str(omniglot_path), "--budget", "0.01", "--episodes", "3", "--precision", "float32", "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "episodes of 20-way 1-shot 5-query (each image distorted anew by random_affine)" in out
    assert re.search(r"ProtoNetClassifier: [\d.]+ \+- [\d.]+ %", out)
    # The embedded data are feature vectors: no distortion there.
    assert main(["--budget", "0.01", "--episodes", "3", "-q"]) == 0
    out = capsys.readouterr().out
    assert "episodes of 20-way 1-shot 5-query" in out and "random_affine" not in out


def test_bad_arguments_exit_with_usage(capsys):
    with pytest.raises(SystemExit):
        main(["--learner", "no-such-learner"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("learner", sorted(LEARNERS))
def test_every_registered_learner_runs_the_main_job(learner, capsys):
    args = ["--learner", learner, "--max-epochs", "1", "--tasks-per-epoch", "5", "--episodes", "5", "-q"]
    assert main(args) == 0
    assert re.search(r"Classifier: [\d.]+ \+- [\d.]+ % \(5-way 1-shot, 5 episodes\)", capsys.readouterr().out)


@pytest.mark.parametrize("learner, epochs, tasks, floor", [("maml", 3, 100, 40), ("reptile", 5, 200, 35)])
def test_optimisation_learners_learn_on_the_embedded_data(learner, epochs, tasks, floor, capsys):
    # With the estimators' default step size (the sinusoid value) MAML stayed
    # at chance (20 %) here: the CLI sets step sizes for classification.
    args = ["--learner", learner, "--max-epochs", str(epochs), "--tasks-per-epoch", str(tasks), "--episodes", "40", "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Classifier(inner_lr=" in out
    learned = re.search(r"Classifier: ([\d.]+) \+- [\d.]+ %", out)
    assert float(learned.group(1)) > floor, out


@pytest.mark.parametrize("args, message", [
    (["--n-way", "1"], "must be at least 2"),
    (["--episodes", "1"], "must be at least 2"),
    (["--max-epochs", "-1"], "must be at least 1"),
    (["--k-shot", "0"], "must be at least 1"),
    (["--lr", "-0.1"], "positive number"),
    (["--budget", "0"], "positive number"),
    (["--budget", "-2"], "positive number"),
    (["--budget", "nan"], "positive number"),
    (["--budget", "soon"], "'soon' is not a number"),
    (["--n-way", "60"], "--n-way 60 with --k-shot 1 and --n-query 15"),
    (["--k-shot", "30"], "classes with at least 45 examples"),
])
def test_bad_values_exit_2_before_any_work(args, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(args + ["-q"])
    assert stop.value.code == 2
    err = capsys.readouterr()
    assert message in err.err
    assert "meta-training" not in err.out.split("\n", 1)[-1]  # nothing was trained


def test_evaluation_shows_progress(capsys):
    assert main(["--max-epochs", "1", "--tasks-per-epoch", "5", "--episodes", "5"]) == 0
    captured = capsys.readouterr()
    assert "evaluating on 5 test episodes" in captured.out
    assert "episode" in captured.err  # the progress bar


def test_save_writes_a_learner_to_load_for_cross_val_score(tmp_path, capsys):
    import pickle

    from sklearn.model_selection import cross_val_score

    from conftest import make_subspace_classes
    from skmeta.model_selection import EpisodicSplit

    path = tmp_path / "learner.pkl"
    assert main(["--max-epochs", "1", "--tasks-per-epoch", "5", "--episodes", "5", "-q", "--save", str(path)]) == 0
    assert f"saved the meta-trained learner to {path}" in capsys.readouterr().out
    with open(path, "rb") as f:
        learner = pickle.load(f)
    assert learner.meta_n_features_in_ == 32
    X, y = make_subspace_classes(n_features=32)
    scores = cross_val_score(learner, X, y, cv=EpisodicSplit(n_episodes=3, random_state=0))
    assert scores.shape == (3,)


def test_budget_stops_meta_training_near_the_budget_and_reports(capsys):
    assert main(["--budget", "0.05", "--episodes", "20", "-q"]) == 0
    out = capsys.readouterr().out
    # ProtoNet's recipe trains on wider episodes than it is tested on.
    assert "for 0.05 min: episodes of 20-way 1-shot 5-query" in out
    trained = re.search(r"meta-trained in ([\d.]+) s \((\d+) meta-updates", out)
    assert trained, out
    # Stopped after the first meta-update that ends past 3 s: on the embedded
    # data one update takes milliseconds, so well before 3 s more.
    assert 3.0 <= float(trained.group(1)) < 6.0 and int(trained.group(2)) > 10
    assert re.search(r"ProtoNetClassifier: [\d.]+ \+- [\d.]+ % \(5-way 1-shot, 20 episodes\)", out)


def test_every_learner_has_a_budget_recipe():
    assert set(LEARNERS) <= set(RECIPES)


@pytest.mark.parametrize("learner", sorted(LEARNERS))
def test_every_learner_meta_trains_with_its_recipe_under_a_budget(learner, capsys):
    assert main(["--learner", learner, "--budget", "0.01", "--episodes", "3", "-q"]) == 0
    out = capsys.readouterr().out
    trained = re.search(r"meta-trained in ([\d.]+) s \((\d+) meta-updates", out)
    assert trained and int(trained.group(2)) >= 1, out
    assert re.search(r"Classifier: [\d.]+ \+- [\d.]+ % \(5-way 1-shot, 3 episodes\)", out)


@pytest.mark.parametrize("learner", ["maml", "mann"])
def test_budget_recipes_train_at_least_as_many_ways_as_tested(learner, capsys):
    # MAML's recipe trains 20-way, MANN's 5-way: a head or label slots sized
    # for fewer ways than the test episodes could not be adapted to them.
    assert main(["--learner", learner, "--budget", "0.01", "--n-way", "25", "--episodes", "3", "-q"]) == 0
    out = capsys.readouterr().out
    assert "episodes of 25-way" in out
    assert re.search(r"Classifier: [\d.]+ \+- [\d.]+ % \(25-way 1-shot, 3 episodes\)", out)
