"""Meta-train the default weights of InContextClassifier on the synthetic prior.

Tasks come from ``make_prior_tasks`` only (no real dataset), so every real
dataset is unseen by the result. Training stops after ``--minutes`` of wall
time; the learning rate warms up, then follows a cosine to zero over that
time. The weights (a plain state_dict and the network's configuration) go
to ``--out``, loadable with ``torch.load(weights_only=True)`` and by
``InContextClassifier(pretrained=path)``.

    taskset -c 1 python benchmarks/train_incontext_default.py --minutes 60 --threads 1
    python benchmarks/train_incontext_default.py --minutes 60 --device cuda --out incontext_gpu.pt

The first writes skmeta/tabular/_weights/incontext_default.pt, the shipped default.
"""

import argparse
import sys
import time
from pathlib import Path

import torch
from skorch.callbacks import Callback, GradientNormClipping

from skmeta.datasets import make_prior_tasks
from skmeta.tabular import InContextClassifier
from skmeta.tabular.incontext import DEFAULT_WEIGHTS

NETWORK = dict(max_features=100, d_model=64, n_heads=4, n_layers=4, dim_feedforward=128)


class WallClockSchedule(Callback):
    """Warm-up then cosine learning rate over a wall-clock budget; stops the
    run (as an interrupt, which ``meta_fit`` ends cleanly) when it is spent."""

    def __init__(self, seconds, lr, warmup=0.03, every=200):
        self.seconds, self.lr, self.warmup, self.every = seconds, lr, warmup, every

    def on_train_begin(self, net, **kwargs):
        self.start, self.steps, self.loss, self.acc = time.perf_counter(), 0, 0.0, 0.0

    def on_batch_begin(self, net, **kwargs):
        progress = (time.perf_counter() - self.start) / self.seconds
        if progress >= 1:
            self.stopped_ = True  # a requested stop, not an interruption (no warning)
            raise KeyboardInterrupt
        factor = progress / self.warmup if progress < self.warmup else 0.5 * (
            1 + torch.cos(torch.tensor(torch.pi * (progress - self.warmup) / (1 - self.warmup))).item())
        for group in net.optimizer_.param_groups:
            group["lr"] = self.lr * max(factor, 0.01)

    def on_batch_end(self, net, batch=None, training=True, **kwargs):
        self.steps += 1
        self.loss += net.history[-1, "batches", -1, "train_loss"]
        self.acc += net.history[-1, "batches", -1, "train_acc"]
        if self.steps % self.every == 0:
            elapsed = time.perf_counter() - self.start
            print(f"{elapsed / 60:6.1f} min  step {self.steps:6d}  tasks {self.steps * net.batch_size:7d}  "
                  f"loss {self.loss / self.every:.4f}  acc {self.acc / self.every:.3f}  "
                  f"lr {net.optimizer_.param_groups[0]['lr']:.2e}", flush=True)
            self.loss = self.acc = 0.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-clock training budget")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=8, help="tasks per meta-update")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    seconds = 60 * args.minutes
    learner = InContextClassifier(
        pretrained=False, lr=args.lr, batch_size=args.batch_size, max_epochs=10**6, device=args.device,
        callbacks=[("schedule", WallClockSchedule(seconds, args.lr)),
                   ("clip", GradientNormClipping(1.0))],
        verbose=0, random_state=args.seed, **{f"module__{k}": v for k, v in NETWORK.items()},
    )
    # Few query rows per class: each costs a forward and backward pass, and a
    # task with more of them teaches little more than the next task would.
    tasks = make_prior_tasks(n_tasks=1000 * args.batch_size, n_query=(4, 10), random_state=args.seed)
    start = time.perf_counter()
    learner.meta_fit(tasks)
    took = time.perf_counter() - start
    steps = dict(learner.callbacks_)["schedule"].steps
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in learner.module_.state_dict().items()}
    torch.save({"config": dict(NETWORK), "state_dict": state,
                "training": {"minutes": took / 60, "meta_updates": steps, "tasks": steps * args.batch_size,
                             "batch_size": args.batch_size, "lr": args.lr, "device": str(args.device),
                             "seed": args.seed}}, out)
    print(f"{steps} meta-updates ({steps * args.batch_size} tasks) in {took / 60:.1f} min; "
          f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    sys.exit(main())
