"""InContextClassifier on new datasets: the across-datasets protocol of
bench_tabular.py alone, with fewer episodes, for a machine where the full
benchmark does not fit.

The same 5-fold leave-datasets-out rotation, episodes, baselines and
FeatureVote meta-training as ``bench_tabular.py`` (its functions are
reused); only the number of test episodes per (dataset, way, shot) is a
parameter, and the within-dataset part is left out.

    python benchmarks/bench_tabular_incontext.py --episodes 3 --threads 1 --jobs 1

Writes docs/benchmarks/tabular_incontext.md.
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_tabular

from skmeta.tabular.incontext import DEFAULT_WEIGHTS


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=str(bench_tabular.ROOT.parent / "shared" / "data"))
    parser.add_argument("--episodes", type=int, default=3, help="test episodes per (dataset, way, shot)")
    parser.add_argument("--latency-episodes", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--jobs", type=int, default=1, help="joblib workers scoring episodes")
    parser.add_argument("--output", default=str(bench_tabular.ROOT / "docs" / "benchmarks" / "tabular_incontext.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.across_tasks, args.across_epochs, args.across_episodes = 1000, 4, args.episodes
    args.folds, args.datasets_per_fold = bench_tabular.N_FOLDS, None

    start = time.perf_counter()
    across, times = bench_tabular.across_datasets(args, args.data_home, lambda line: print(line, flush=True))
    seconds = time.perf_counter() - start
    training = torch.load(DEFAULT_WEIGHTS, weights_only=True).get("training", {})
    lines = [
        "# Tabular few-shot learning on new datasets: InContextClassifier",
        "",
        "Command:",
        "",
        "```",
        " ".join(["python benchmarks/bench_tabular_incontext.py", *sys.argv[1:]]),
        "```",
        "",
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), shared with "
        f"other jobs, torch {torch.__version__}, {args.threads} torch threads, {args.jobs} joblib workers, "
        f"no GPU. Date: {time.strftime('%Y-%m-%d')}. Whole run: {seconds / 60:.1f} minutes.",
        "",
        "The across-datasets protocol of [tabular.md](tabular.md) (`benchmarks/bench_tabular.py`) with "
        f"{args.episodes} instead of 10 test episodes per (dataset, way, shot), so the intervals are "
        "wider than there. Shipped weights: "
        + (f"{training['tasks']} prior tasks ({training['meta_updates']} meta-updates of "
           f"{training['batch_size']}) in {training['minutes']:.1f} minutes on {training['device']}."
           if training else "no training record in the weights file."),
        "",
        *bench_tabular.report_across(args, across, times),
    ]
    Path(args.output).write_text("\n".join(lines))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
