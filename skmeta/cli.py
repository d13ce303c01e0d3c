"""The main job: meta-train a learner, then report few-shot accuracy.

    skmeta                                  # embedded data, no files needed
    skmeta --omniglot PATH                  # Lake's Omniglot zips in PATH
    skmeta --learner protonet --n-way 5 --k-shot 5 --episodes 600
    skmeta --omniglot PATH --learner maml --budget 10   # 10 minutes with the tuned recipe
    torchrun --nproc_per_node=2 -m skmeta --save learner.pkl   # data-parallel meta-training

Classes are split in two: meta-training sees one part, the reported
accuracy is on episodes of the other (for Omniglot, whole alphabets are held
out). The result is the mean accuracy over test episodes with its 95%
confidence interval, next to 1-nearest-neighbour on raw features, the
floor every meta-learner must clear.
"""

import argparse
import os
import pickle
import sys
import time

import numpy as np
import torch
from sklearn.base import clone
from sklearn.neighbors import KNeighborsClassifier
from tqdm.auto import tqdm

from . import __version__
from ._recipes import RECIPES, budget_learner
from .datasets import OMNIGLOT_TEST_ALPHABETS, load_omniglot, make_subspace_classification
from .distributed import DataParallel, init_process_group, is_main_process, shard_tasks
from .memory import MANNClassifier
from .metric import (
    MatchingNetworkClassifier,
    PretrainedClassifier,
    ProtoNetClassifier,
    RelationNetworkClassifier,
    SiameseNetworkClassifier,
)
from .model_selection import EpisodicSplit, format_confidence_interval
from .modules import MLP, Conv4
from .optimization import ANILClassifier, MAMLClassifier, MetaSGDClassifier, ReptileClassifier
from .tasks import EpisodeSampler, rotate_classes

# name -> (estimator class, constructor arguments beyond the backbone)
LEARNERS = {
    "protonet": (ProtoNetClassifier, {}),
    "matching": (MatchingNetworkClassifier, {}),
    "siamese": (SiameseNetworkClassifier, {}),
    "relation": (RelationNetworkClassifier, {}),
    "pretrained": (PretrainedClassifier, {}),
    # The optimisation family's step sizes default to Finn et al.'s sinusoid
    # value (0.01), with which one step barely moves a classifier; 0.4 is
    # their Omniglot value. Reptile takes several smaller steps and learns
    # far better here from a zero head (Kao et al.'s zeroing trick).
    "maml": (MAMLClassifier, {"inner_lr": 0.4}),
    "fomaml": (MAMLClassifier, {"first_order": True, "inner_lr": 0.4}),
    "metasgd": (MetaSGDClassifier, {"inner_lr": 0.4}),
    "anil": (ANILClassifier, {"inner_lr": 0.4}),
    "reptile": (ReptileClassifier, {"inner_lr": 0.1, "zero_head": True}),
    "mann": (MANNClassifier, {}),
}


def make_learner(name, images):
    """The learner called ``name``, with Conv-4 for images, an MLP otherwise."""
    cls, kwargs = LEARNERS[name]
    if cls is MANNClassifier:  # its own network: an LSTM controller with an external memory
        return cls(**kwargs)
    if images:
        return cls(Conv4, **kwargs)
    return cls(MLP, module__hidden_sizes=(128,), **kwargs)


def make_budget_learner(args, images):
    """The learner of ``args.learner`` set up by its recipe for
    ``args.budget`` minutes, and the shape of its training episodes."""
    learner, episode = budget_learner(args.learner, 60 * args.budget, n_way=args.n_way, k_shot=args.k_shot,
                                      n_query=args.n_query, images=images)
    if isinstance(learner, MANNClassifier):  # its own network
        return learner, episode
    if images:
        return learner.set_params(module=Conv4), episode
    return learner.set_params(module=MLP, module__hidden_sizes=(128,)), episode


def _bf16_is_fast():
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def load_data(args):
    """(X_train, y_train), (X_test, y_test), whether they are images, and the augmentation."""
    if args.omniglot:
        data = load_omniglot(args.omniglot, download=args.download)
        test = np.isin(data.alphabet, OMNIGLOT_TEST_ALPHABETS)
        if not test.any():
            raise SystemExit(f"none of the test alphabets {OMNIGLOT_TEST_ALPHABETS} is in {args.omniglot}")
        return (data.data[~test], data.target[~test]), (data.data[test], data.target[test]), True, rotate_classes()
    data = make_subspace_classification(random_state=args.random_state)
    test = data.target >= 150
    return (data.data[~test], data.target[~test]), (data.data[test], data.target[test]), False, None


def _integer(low):
    """An argparse type: an integer of at least ``low``."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(prog="skmeta", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"skmeta {__version__}")
    parser.add_argument("--learner", choices=sorted(LEARNERS), default="protonet")
    data = parser.add_argument_group("data")
    data.add_argument("--omniglot", metavar="PATH",
                      help="folder with Lake's Omniglot zips; without it, an embedded generated family is used")
    data.add_argument("--download", action="store_true", help="fetch missing Omniglot zips (needs internet)")
    episodes = parser.add_argument_group("episodes")
    episodes.add_argument("--n-way", type=_integer(2), default=5)
    episodes.add_argument("--k-shot", type=_integer(1), default=1)
    episodes.add_argument("--n-query", type=_integer(1), default=15)
    episodes.add_argument("--episodes", type=_integer(2), default=600,
                          help="test episodes (at least 2 for a confidence interval)")
    training = parser.add_argument_group("meta-training")
    training.add_argument("--tasks-per-epoch", type=_integer(1), default=200)
    training.add_argument("--max-epochs", type=_integer(1), default=None,
                          help="default: 10, or no limit with --budget")
    training.add_argument("--budget", type=_positive_float, default=None, metavar="MINUTES",
                          help="meta-train for this many minutes of wall-clock time with the learner's "
                               "tuned recipe (training episode shape, learning rate, warm-up then cosine "
                               "annealing over the budget)")
    training.add_argument("--lr", type=_positive_float, default=None,
                          help="meta learning rate (default: the learner's)")
    training.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                          help="auto: bfloat16 where the CPU computes it natively")
    training.add_argument("--device", default="cpu")
    training.add_argument("--threads", type=_integer(1), default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--random-state", type=_integer(0), default=0)
    parser.add_argument("--save", metavar="PATH",
                        help="pickle the meta-trained learner to PATH (pickle.load reads it back, on any device)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-epoch log")
    return parser


def _check_against_data(parser, args, train, test, train_episode=None):
    """Every episode setting against the data, before any work: argparse's
    error (exit status 2) rather than a failure after meta-training.
    ``train_episode`` is the shape of the training episodes where it is not
    the test episodes' (a recipe's, with ``--budget``)."""
    test_episode = {"n_way": args.n_way, "k_shot": args.k_shot, "n_query": args.n_query}
    for name, (X, y), episode in (("meta-training", train, train_episode or test_episode),
                                  ("test", test, test_episode)):
        classes, counts = np.unique(y, return_counts=True)
        needed = episode["k_shot"] + episode["n_query"]
        usable = int((counts >= needed).sum())
        if usable < episode["n_way"]:
            source = "" if episode is test_episode else f" (the {args.learner} recipe's training episodes)"
            parser.error(
                f"--n-way {episode['n_way']} with --k-shot {episode['k_shot']} and --n-query "
                f"{episode['n_query']}{source}: the {name} classes have {usable} classes with at least "
                f"{needed} examples (of {len(classes)} classes)"
            )
    try:
        torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device {args.device!r}: {error}")


def evaluate(learner, X, y, cv, description, quiet):
    """Per-episode accuracy of ``learner`` adapted to each support set, with a progress bar."""
    learner = clone(learner)
    scores = []
    for support, query in tqdm(cv.split(X, y), total=cv.get_n_splits(), desc=description, disable=quiet,
                               leave=False, unit="episode"):
        scores.append(learner.fit(X[support], y[support]).score(X[query], y[query]))
    return np.array(scores)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    # Under torchrun: join the other processes (each meta-trains on its shard
    # of every pass; gradients are averaged); only rank 0 reports and saves.
    args.device = init_process_group(device=args.device)
    if args.budget is not None and torch.distributed.is_initialized():
        # Each process would stop on its own clock, after a different number
        # of meta-updates, and wait forever for the others' gradients.
        parser.error("--budget stops each process on its own clock: run it without torchrun")
    if not is_main_process():
        sys.stdout = open(os.devnull, "w")
    if args.threads:
        torch.set_num_threads(args.threads)
    precision = args.precision
    if precision == "auto":
        # bfloat16 pays off for convolutions on CPUs that compute it natively;
        # for the small MLP of the embedded data its casts cost more than they save.
        native = args.device == "cpu" and _bf16_is_fast()
        precision = "bfloat16" if args.omniglot and native else "float32"

    train, test, images, augment = load_data(args)
    if args.budget is None:
        learner = make_learner(args.learner, images)
        settings = LEARNERS[args.learner][1]
        episode = {"n_way": args.n_way, "k_shot": args.k_shot, "n_query": args.n_query}
    else:
        learner, episode = make_budget_learner(args, images)
        settings = RECIPES[args.learner].params
    _check_against_data(parser, args, train, test, episode)
    source = f"Omniglot in {args.omniglot}" if args.omniglot else "embedded subspace classes"
    print(f"data: {source}; meta-training on {len(np.unique(train[1]))} classes, "
          f"testing on {len(np.unique(test[1]))} unseen classes")

    tasks = EpisodeSampler(*train, **episode, n_tasks=args.tasks_per_epoch, augment=augment,
                           random_state=args.random_state)
    max_epochs = args.max_epochs or (10 if args.budget is None else 10**6)
    learner.set_params(
        max_epochs=max_epochs, precision=precision, device=args.device,
        verbose=0 if args.quiet else 1, random_state=args.random_state,
    )
    if args.lr is not None:
        learner.set_params(lr=args.lr)
    settings = ", ".join(f"{key}={value!r}" for key, value in settings.items())
    shape = "{n_way}-way {k_shot}-shot {n_query}-query".format(**episode)
    if episode.get("transform") is not None:
        shape += " (each image distorted anew by random_affine)"
    if args.budget is None:
        print(f"meta-training {type(learner).__name__}({settings}) ({precision}): "
              f"{max_epochs} epochs x {args.tasks_per_epoch} episodes of {shape}")
    else:
        print(f"meta-training {type(learner).__name__}({settings}) ({precision}) for {args.budget:g} min: "
              f"episodes of {shape}, learning rate warmed up then cosine-annealed over the budget")
    start = time.perf_counter()
    if torch.distributed.is_initialized():
        learner.set_params(callbacks=[("data_parallel", DataParallel())])
        tasks = shard_tasks(tasks)
    learner.meta_fit(tasks)
    seconds = time.perf_counter() - start
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
        if not is_main_process():
            return 0
    if args.save:
        with open(args.save, "wb") as f:
            pickle.dump(learner, f)
        print(f"saved the meta-trained learner to {args.save}")
    updates = sum(len(epoch["batches"]) for epoch in learner.history)
    print(f"meta-trained in {seconds:.1f} s ({updates} meta-updates, {updates / seconds:.1f} per second)")

    cv = EpisodicSplit(n_way=args.n_way, k_shot=args.k_shot, n_query=args.n_query,
                       n_episodes=args.episodes, random_state=args.random_state)
    print(f"evaluating on {args.episodes} test episodes")
    scores = evaluate(learner, *test, cv, type(learner).__name__, args.quiet)
    floor = evaluate(KNeighborsClassifier(n_neighbors=1), *test, cv, "1-NN", args.quiet)
    shape = f"{args.n_way}-way {args.k_shot}-shot, {args.episodes} episodes"
    print(f"{type(learner).__name__}: {format_confidence_interval(scores)} ({shape})")
    print(f"1-NN on raw features: {format_confidence_interval(floor)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
