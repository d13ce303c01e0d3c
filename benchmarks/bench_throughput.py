"""Meta-training throughput of skmeta against hand-written PyTorch loops, side by side.

Every configuration runs in its own process, in interleaved rounds (plain,
skmeta, plain, skmeta, ...), on the same Omniglot arrays (the development
split's meta-training alphabets, 28x28), so the machine's drift cancels in
the ratios; a ratio is computed within each round and the median over
rounds is reported.

- ProtoNet, 5-way 1-shot 15-query, Conv-4: "plain" is the loop a user
  writes without a library (numpy episode sampling, a torch.nn Conv-4 in
  the default NCHW layout, prototypes, cross-entropy on negative squared
  distances, Adam); "skmeta" is ``ProtoNetClassifier(Conv4).meta_fit``,
  float32, and bfloat16 where the CPU computes it natively.
- MAML, Conv-4 with a 5-way head, meta-batch 8, 1 and 5 inner steps,
  second and first order: "module copy" is learn2learn's pattern (per task,
  a deep copy whose parameters are differentiable clones, inner steps with
  ``torch.autograd.grad``, query loss backward; one Adam step per
  meta-batch) on the same plain Conv-4; "skmeta" is ``MAMLClassifier``.
- Adaptation latency (fit + predict of a 5-way 5-shot episode with 75
  queries, median of 50) and peak resident memory of each process.

    python benchmarks/bench_throughput.py                      # full: ~15 minutes on 2 cores
    python benchmarks/bench_throughput.py --quick              # smoke run, ~2 minutes, prints only
    python benchmarks/bench_throughput.py --cpus 0,1 --threads 2 --output docs/benchmarks/throughput.md

Needs the Omniglot zips in ../shared/data/omniglot (or ``--omniglot PATH``).
Writes the page given by ``--output`` (full mode only).
"""

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# learn2learn's clone_module / update_module, as the inner-loop benchmark writes them
from bench_inner_loop_throughput import clone_module, update_module

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OMNIGLOT = ROOT.parent / "shared" / "data" / "omniglot"
N_WAY, K_SHOT, N_QUERY = 5, 1, 15


# ----------------------------------------------------------------------
# the references: what a user writes by hand
# ----------------------------------------------------------------------
def plain_conv4(out_features=None):
    """Conv-4 as torch.nn layers, default layout: conv, batch norm, ReLU, max-pool x 4."""
    layers = []
    for i in range(4):
        layers += [nn.Conv2d(1 if i == 0 else 64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2)]
    layers.append(nn.Flatten())
    if out_features:
        layers.append(nn.Linear(64, out_features))
    return nn.Sequential(*layers)


def sample_episode(rng, by_class, n_way, k_shot, n_query):
    classes = rng.choice(len(by_class), n_way, replace=False)
    picks = [rng.choice(by_class[c], k_shot + n_query, replace=False) for c in classes]
    support = np.concatenate([p[:k_shot] for p in picks])
    query = np.concatenate([p[k_shot:] for p in picks])
    return support, query


def plain_protonet(images, by_class, n_episodes, device):
    model = plain_conv4().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.RandomState(0)
    y_query = torch.arange(N_WAY, device=device).repeat_interleave(N_QUERY)

    def episode():
        support, query = sample_episode(rng, by_class, N_WAY, K_SHOT, N_QUERY)
        z = model(images[np.concatenate([support, query])])
        prototypes = z[: N_WAY * K_SHOT].reshape(N_WAY, K_SHOT, -1).mean(1)
        loss = F.cross_entropy(-torch.cdist(z[N_WAY * K_SHOT:], prototypes).pow(2), y_query)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return _rate(episode, n_episodes, device)


def plain_maml(images, by_class, n_tasks, device, inner_steps, first_order, meta_batch=8, inner_lr=0.4):
    model = plain_conv4(N_WAY).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.RandomState(0)
    y_support = torch.arange(N_WAY, device=device).repeat_interleave(K_SHOT)
    y_query = torch.arange(N_WAY, device=device).repeat_interleave(N_QUERY)

    def meta_batch_step():
        optimizer.zero_grad()
        for _ in range(meta_batch):
            support, query = sample_episode(rng, by_class, N_WAY, K_SHOT, N_QUERY)
            learner = clone_module(model)
            for _ in range(inner_steps):
                loss = F.cross_entropy(learner(images[support]), y_support)
                grads = torch.autograd.grad(loss, list(learner.parameters()), create_graph=not first_order)
                update_module(learner, grads, inner_lr)
            (F.cross_entropy(learner(images[query]), y_query) / meta_batch).backward()
        optimizer.step()

    return meta_batch * _rate(meta_batch_step, max(n_tasks // meta_batch, 1), device)


def _rate(step, n_steps, device, warm_up=3):
    for _ in range(warm_up):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(n_steps):
        step()
    _sync(device)
    return n_steps / (time.perf_counter() - start)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------
# skmeta
# ----------------------------------------------------------------------
def skmeta_protonet(X, y, n_episodes, device, precision):
    from skmeta import ProtoNetClassifier
    from skmeta.modules import Conv4

    learner = ProtoNetClassifier(Conv4, max_epochs=1, precision=precision, device=device, verbose=0, random_state=0)
    return _meta_training_rate(learner, X, y, n_episodes, warm_up=3, device=device)


def skmeta_maml(X, y, n_tasks, device, precision, inner_steps, first_order, meta_batch=8):
    from skmeta import MAMLClassifier
    from skmeta.modules import Conv4

    learner = MAMLClassifier(Conv4, module__out_features=N_WAY, inner_lr=0.4, inner_steps=inner_steps,
                             first_order=first_order, batch_size=meta_batch, max_epochs=1, precision=precision,
                             device=device, verbose=0, random_state=0)
    n_tasks = max(n_tasks // meta_batch, 1) * meta_batch
    return _meta_training_rate(learner, X, y, n_tasks, warm_up=3 * meta_batch, device=device)


def _meta_training_rate(learner, X, y, n_tasks, warm_up, device):
    """Tasks per second of one pass of ``partial_meta_fit``, after a short
    ``meta_fit`` that initialises the learner and warms up its kernels."""
    from skmeta import EpisodeSampler

    def tasks(n, seed):
        return EpisodeSampler(X, y, n_way=N_WAY, k_shot=K_SHOT, n_query=N_QUERY, n_tasks=n, random_state=seed)

    learner.meta_fit(tasks(warm_up, 1))
    timed = tasks(n_tasks, 0)
    _sync(device)
    start = time.perf_counter()
    learner.partial_meta_fit(timed, epochs=1)
    _sync(device)
    return n_tasks / (time.perf_counter() - start), learner


def adaptation_ms(learner, X, y, n_episodes=50):
    """Median milliseconds of fit + predict on a 5-way 5-shot episode with 75 queries."""
    from skmeta.model_selection import EpisodicSplit

    times = []
    for support, query in EpisodicSplit(n_way=5, k_shot=5, n_query=15, n_episodes=n_episodes,
                                        random_state=0).split(X, y):
        start = time.perf_counter()
        learner.fit(X[support], y[support]).predict(X[query])
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


# ----------------------------------------------------------------------
# one configuration per process
# ----------------------------------------------------------------------
def configurations(quick, bf16, device):
    n_proto = 30 if quick else 200
    n_maml = 16 if quick else 64
    groups = [("ProtoNet 5-way 1-shot, Conv-4", "episodes/s", "plain",
               [("plain", dict(kind="plain_protonet", n=n_proto)),
                ("skmeta float32", dict(kind="protonet", n=n_proto, precision="float32"))]
               + ([("skmeta bfloat16", dict(kind="protonet", n=n_proto, precision="bfloat16"))] if bf16 else []))]
    for steps in (1, 5):
        for first_order in (False, True):
            n = n_maml if steps == 1 else n_maml // 2
            order = "first" if first_order else "second"
            common = dict(n=n, steps=steps, first_order=first_order)
            members = [("module copy", dict(kind="plain_maml", **common)),
                       ("skmeta float32", dict(kind="maml", precision="float32", **common))]
            if bf16:
                members.append(("skmeta bfloat16", dict(kind="maml", precision="bfloat16", **common)))
            groups.append((f"MAML {steps} step(s), {order} order, meta-batch 8", "tasks/s", "module copy", members))
    for group in groups:
        for _, config in group[3]:
            config["device"] = device
    return groups


def worker(config, data_file, eval_file):
    # Every process imports the library, so peak memory compares training alone.
    import skmeta  # noqa: F401

    data = np.load(data_file)
    X, y = data["X"], data["y"]
    device = config["device"]
    images = torch.as_tensor(X, device=device).reshape(-1, 1, 28, 28)
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    result = {}
    kind = config["kind"]
    if kind == "plain_protonet":
        result["rate"] = plain_protonet(images, by_class, config["n"], device)
    elif kind == "plain_maml":
        result["rate"] = plain_maml(images, by_class, config["n"], device, config["steps"], config["first_order"])
    elif kind == "protonet":
        result["rate"], learner = skmeta_protonet(X, y, config["n"], device, config["precision"])
    else:
        result["rate"], learner = skmeta_maml(X, y, config["n"], device, config["precision"], config["steps"],
                                              config["first_order"])
    if kind in ("protonet", "maml") and (kind == "protonet" or config["steps"] == 5):
        test = np.load(eval_file)
        if kind == "maml":
            learner.set_params(inner_steps=5)
        result["adapt_ms"] = adaptation_ms(learner, test["X"], test["y"])
    # ru_maxrss is in KiB on Linux
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run_worker(config, data_file, eval_file, threads, cpus):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    code = ("import json, os, sys, torch; sys.path.insert(0, {bench!r}); "
            "cpus = {cpus!r}; cpus and os.sched_setaffinity(0, cpus); torch.set_num_threads({threads}); "
            "import bench_throughput as b; b.worker(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3])").format(
        bench=str(Path(__file__).parent), cpus=cpus, threads=threads)
    out = subprocess.run([sys.executable, "-c", code, json.dumps(config), data_file, eval_file],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_native():
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--omniglot", default=str(DEFAULT_OMNIGLOT))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpus", default=None, help="comma-separated CPU ids each worker is pinned to")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", choices=("auto", "yes", "no"), default="auto",
                        help="include bfloat16 runs (auto: where the CPU computes bfloat16 natively, or on CUDA)")
    parser.add_argument("--only", default=None, help="run only the configurations whose title contains this")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=None, help="write the results page here (full mode only)")
    parser.add_argument("--json", default=None, help="also write the raw results here")
    parser.add_argument("--section", default="cpu", help="which results section of the page to (re)write")
    parser.add_argument("--report-only", metavar="JSON", default=None,
                        help="measure nothing: write the section from the raw results of an earlier run "
                             "(rounds it did not finish are left out); give --machine and --command too")
    parser.add_argument("--machine", default=None, help="with --report-only: the machine the results are from")
    parser.add_argument("--command", default=None, help="with --report-only: the command that produced them")
    args = parser.parse_args(argv)
    cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else None
    if cpus and len(cpus) < args.threads:
        parser.error("--cpus names fewer CPUs than --threads")
    bf16 = {"yes": True, "no": False}.get(args.bf16, args.device.startswith("cuda") or bf16_native())

    if args.report_only:
        raw = json.loads(Path(args.report_only).read_text())
        results = {tuple(key.split(" | ")): value for key, value in raw.items()}
        groups = [g for g in configurations(False, True, args.device) if (g[0], g[2]) in results]
        groups = [(t, u, r, [(n, c) for n, c in m if (t, n) in results]) for t, u, r, m in groups]
        table = summarise(groups, results)
        print("\n".join(table))
        if args.output:
            write_page(Path(args.output), table, args.command, args.machine, args.section)
        return 0

    sys.path.insert(0, str(ROOT))
    from skmeta.datasets import OMNIGLOT_TEST_ALPHABETS, load_omniglot

    data = load_omniglot(args.omniglot)
    test = np.isin(data.alphabet, OMNIGLOT_TEST_ALPHABETS)
    rounds = 1 if args.quick else args.rounds
    groups = configurations(args.quick, bf16, args.device)
    if args.only:
        groups = [g for g in groups if args.only.lower() in g[0].lower()]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_file, eval_file = os.path.join(tmp, "train.npz"), os.path.join(tmp, "test.npz")
        np.savez(data_file, X=data.data[~test].astype(np.float32), y=data.target[~test])
        np.savez(eval_file, X=data.data[test].astype(np.float32), y=data.target[test])
        for r in range(rounds):
            for title, _, _, members in groups:
                for name, config in members:
                    out = run_worker(config, data_file, eval_file, args.threads, cpus)
                    results.setdefault((title, name), []).append(out)
                    if args.json:  # after every run, so an interrupted benchmark keeps what it measured
                        Path(args.json).write_text(json.dumps({f"{t} | {n}": v for (t, n), v in results.items()},
                                                              indent=1))
                    print(f"round {r + 1}/{rounds}  {title:45s} {name:16s} {out['rate']:8.2f}  "
                          f"{out.get('adapt_ms', float('nan')):6.1f} ms  {out['peak_rss_mb']:6.0f} MB", flush=True)
    table = summarise(groups, results)
    print("\n".join(table))
    if args.output and not args.quick:
        given = list(argv if argv is not None else sys.argv[1:])
        if "--json" in given:  # where the raw results went is not part of what reproduces them
            del given[given.index("--json"):given.index("--json") + 2]
        command = "python benchmarks/bench_throughput.py " + " ".join(given)
        machine = (f"{cpu_name()}, {args.threads} torch threads" + (f" pinned to CPUs {args.cpus}" if cpus else "")
                   + f" ({os.cpu_count()} on the machine), torch {torch.__version__}, device {args.device}; "
                   + ("bfloat16 native" if bf16_native() else "no native bfloat16 on this CPU"))
        write_page(Path(args.output), table, command, machine, args.section)
    return 0


def summarise(groups, results):
    lines = ["| configuration | implementation | rate (per round) | ratio to reference (median) | adapt ms | peak MB |",
             "| --- | --- | --- | --- | --- | --- |"]
    for title, unit, reference, members in groups:
        ref_rates = [o["rate"] for o in results[(title, reference)]]
        for name, _ in members:
            outs = results[(title, name)]
            rates = [o["rate"] for o in outs]
            ratio = float(np.median([a / b for a, b in zip(rates, ref_rates)]))
            adapt = [o["adapt_ms"] for o in outs if "adapt_ms" in o]
            lines.append(
                f"| {title} | {name} | {', '.join(f'{v:.1f}' for v in rates)} {unit} | "
                + ("reference" if name == reference else f"x{ratio:.2f}")
                + (f" | {np.median(adapt):.1f} |" if adapt else " | - |")
                + f" {max(o['peak_rss_mb'] for o in outs):.0f} |"
            )
    return lines


def write_page(path, table, command, machine, section):
    """Write the results between ``<!-- results:SECTION -->`` markers of the
    page (kept prose around them), or a new page with only them."""
    date = datetime.date.today().isoformat()
    block = "\n".join([
        f"<!-- results:{section} -->",
        f"Command: `{command}`",
        "",
        f"Machine: {machine}. Date: {date}.",
        "",
        *table,
        f"<!-- end results:{section} -->",
    ])
    text = path.read_text() if path.exists() else "# Meta-training throughput against hand-written loops\n\n"
    start, end = f"<!-- results:{section} -->", f"<!-- end results:{section} -->"
    if start in text and end in text:
        head, _, rest = text.partition(start)
        text = head + block + rest.partition(end)[2]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
