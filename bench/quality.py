"""Quality statistics benchmark: ``labeling.quality.compute_quality`` against the libraries it
builds on, called directly on the same votes in the same process.

1. Builds a synthetic, seeded vote table (``--votes``, default 1,000,000, from ``--annotators``,
   default 1,000; ``--per-comparison`` distinct annotators on each comparison, four rounds, five
   models, 2% gold). Most annotators follow a latent truth with noise; 2% always pick the left
   response, 2% vote at random and 1% answer faster than anyone can read.
2. ``libraries``: what the computation cannot avoid, done with the libraries directly: crowd-kit's
   ``DawidSkene(n_iter=100, tol=1e-5).fit`` on the table's ``comparison``/``annotator``/``choice``
   columns, ``krippendorff.alpha`` (nominal, from per-comparison value counts) for the project and
   each round, and ``scipy.stats.binomtest`` per annotator for position bias.
3. ``ours``: ``compute_quality`` on the same DataFrame: validation, all of the above, pairwise
   agreement, leave-one-out consensus, reading-time floor, gold, flags, bias audit per round,
   soft labels.
4. Runs the two sides alternately ``--repeat`` times (default 2) and keeps each side's fastest
   run. Prints every run's seconds, each side's peak RSS (``VmHWM``, reset before each phase
   through ``/proc/self/clear_refs``; the vote table itself is already in it), the ratio ours /
   libraries of the best runs (goal of issue 11: at most 1.2), the machine's load average before
   and after, and what the report found (flagged annotators by kind).

Usage::

    .venv/bin/python bench/quality.py                      # 1,000,000 votes, 1,000 annotators
    .venv/bin/python bench/quality.py --votes 200000 --annotators 200

``--job-project NAME`` times the whole quality job instead (``labeling.quality.jobs``: read the
project's human votes from the database, compute, store the report) on a project that already
exists in the database ``DATABASE_URL`` names, for example the one
``bench/export_snapshot.py --votes 1000000 --annotators 1000 --keep-db`` leaves behind
(``DATABASE_URL=postgres://postgres@127.0.0.1:5432/preflab_bench_export``, project
``bench: snapshot export``). It prints the wall time, the peak RSS and the vote count.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHOICES = np.array(["A", "B", "tie", "both_bad"], dtype=object)
MODELS = np.array(["model-1", "model-2", "model-3", "model-4", "model-5"], dtype=object)


KINDS = ("honest", "always-left", "random", "fast")


def build_votes(
    n_votes: int, n_annotators: int, per_comparison: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """The vote table and each annotator's kind (an index into KINDS)."""
    if per_comparison < 2 or per_comparison > n_annotators:
        raise SystemExit("--per-comparison must be between 2 and --annotators")
    rng = np.random.default_rng(seed)
    n_comparisons = -(-n_votes // per_comparison)
    # Distinct annotators per comparison: a random start plus distinct sorted offsets.
    offsets = np.sort(
        np.stack([rng.choice(n_annotators, per_comparison, replace=False) for _ in range(64)]),
        axis=1,
    )[rng.integers(0, 64, n_comparisons)]
    start = rng.integers(0, n_annotators, n_comparisons)
    annotator = ((start[:, None] + offsets) % n_annotators).ravel()[:n_votes]
    comparison = np.repeat(np.arange(n_comparisons), per_comparison)[:n_votes]

    kind = rng.choice(4, size=n_annotators, p=[0.95, 0.02, 0.02, 0.01])  # honest/left/random/fast
    accuracy = rng.uniform(0.7, 0.95, n_annotators)
    truth = rng.choice(4, size=n_comparisons, p=[0.4, 0.4, 0.15, 0.05])
    len_a = rng.integers(100, 3000, n_comparisons)
    len_b = rng.integers(100, 3000, n_comparisons)
    model_a = rng.integers(0, len(MODELS), n_comparisons)
    model_b = (model_a + rng.integers(1, len(MODELS), n_comparisons)) % len(MODELS)
    is_gold = (rng.random(n_comparisons) < 0.02) & (truth != 3)

    who = kind[annotator]
    left = rng.integers(0, 2, n_votes)
    correct = rng.random(n_votes) < accuracy[annotator]
    wrong = (truth[comparison] + rng.integers(1, 4, n_votes)) % 4
    choice = np.where(correct, truth[comparison], wrong)
    choice = np.where(who == 1, left, choice)
    choice = np.where(who == 2, rng.integers(0, 4, n_votes), choice)
    # Honest readers take about twice the reading-time floor of the default thresholds
    # (40 characters a second over both responses).
    floor = (len_a + len_b)[comparison] / 40.0
    seconds = floor * rng.lognormal(np.log(2.0), 0.25, n_votes)
    seconds = np.where(who == 3, rng.uniform(0.5, 3.0, n_votes), seconds)
    gold = np.full(n_votes, None, dtype=object)
    voted_gold = is_gold[comparison]
    gold[voted_gold] = CHOICES[truth[comparison][voted_gold]]
    table = pd.DataFrame(
        {
            "comparison": comparison,
            "annotator": annotator,
            "choice": CHOICES[choice],
            "left_side": CHOICES[left],
            "seconds": seconds,
            "len_a": len_a[comparison],
            "len_b": len_b[comparison],
            "model_a": MODELS[model_a[comparison]],
            "model_b": MODELS[model_b[comparison]],
            "round": 1 + comparison % 4,
            "gold": gold,
        }
    )
    return table, kind


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_libraries(votes: pd.DataFrame) -> dict[str, float]:
    import krippendorff
    from crowdkit.aggregation import DawidSkene
    from scipy import stats

    times: dict[str, float] = {}
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="crowdkit")
        # Integer codes, as compute_quality passes them: crowd-kit is faster on them than on
        # the strings, and the comparison should measure our overhead, not the encoding.
        DawidSkene(n_iter=100, tol=1e-5).fit(
            pd.DataFrame(
                {
                    "task": pd.factorize(votes["comparison"])[0],
                    "worker": pd.factorize(votes["annotator"])[0],
                    "label": pd.Index(CHOICES).get_indexer(votes["choice"]),
                }
            )
        )
    times["crowd-kit DawidSkene.fit"] = time.perf_counter() - started

    started = time.perf_counter()
    code = pd.Index(CHOICES).get_indexer(votes["choice"])
    comparison = votes["comparison"].to_numpy()
    rounds = votes["round"].to_numpy()
    for mask in [np.ones(len(votes), dtype=bool)] + [rounds == r for r in np.unique(rounds)]:
        units, unit = np.unique(comparison[mask], return_inverse=True)
        counts = np.zeros((len(units), 4))
        np.add.at(counts, (unit, code[mask]), 1)
        krippendorff.alpha(
            value_counts=counts[counts.sum(axis=1) >= 2], level_of_measurement="nominal"
        )
    times["krippendorff.alpha (project + rounds)"] = time.perf_counter() - started

    started = time.perf_counter()
    decisive = code < 2
    left_chosen = decisive & (votes["choice"].to_numpy() == votes["left_side"].to_numpy())
    frame = pd.DataFrame({"annotator": votes["annotator"], "d": decisive, "l": left_chosen})
    for k, n in frame.groupby("annotator")[["l", "d"]].sum().itertuples(index=False):
        if n:
            stats.binomtest(int(k), int(n), 0.5)
    times["scipy binomtest per annotator"] = time.perf_counter() - started
    return times


def run_job(project_name: str, repeat: int) -> None:
    """Time the quality job end to end on an existing project (see the module docstring)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from labeling.models import Project, QualityReport
    from labeling.quality.jobs import compute_quality_report

    project = Project.objects.get(name=project_name)
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"cpus: {os.cpu_count()}, project {project.pk} {project.name!r}")
    times = []
    for attempt in range(1, repeat + 1):
        # A row made directly, not through request_quality_report: nothing is sent to a broker.
        report = QualityReport.objects.create(project=project)
        reset_peak()
        started = time.perf_counter()
        done = compute_quality_report(report.pk)
        times.append(time.perf_counter() - started)
        assert done is not None and done.status == "succeeded", done and done.error
        print(
            f"  run {attempt}: {times[-1]:.2f} s over {done.vote_count:,} votes, "
            f"{len(done.data.get('annotators', [])):,} annotators, "
            f"{len(done.data.get('flagged', []))} flagged, peak RSS {peak_mib():.0f} MiB"
        )
    print(f"best {min(times):.2f} s (goal: under 120 s)")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--annotators", type=int, default=1_000)
    parser.add_argument("--per-comparison", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each side")
    parser.add_argument("--job-project", help="time the quality job on this existing project")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.job_project:
        run_job(args.job_project, args.repeat)
        return

    from labeling.quality import compute_quality

    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    print(f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}")
    started = time.perf_counter()
    votes, kind = build_votes(args.votes, args.annotators, args.per_comparison, args.seed)
    print(
        f"built {len(votes):,} votes on {votes['comparison'].nunique():,} comparisons from "
        f"{votes['annotator'].nunique():,} annotators in {time.perf_counter() - started:.1f} s "
        f"(peak RSS so far {peak_mib():.0f} MiB)"
    )
    # Warm both sides up (imports, first calls) on a small slice before timing either.
    run_libraries(votes.head(3000))
    compute_quality(votes.head(3000))

    # Alternate the two sides --repeat times and keep each side's fastest run: on a shared
    # machine, other processes slow single runs by tens of percent.
    library_runs: list[float] = []
    our_runs: list[float] = []
    library_peak = our_peak = 0.0
    for attempt in range(1, args.repeat + 1):
        reset_peak()
        started = time.perf_counter()
        parts = run_libraries(votes)
        library_runs.append(time.perf_counter() - started)
        library_peak = max(library_peak, peak_mib())
        for name, seconds in parts.items():
            print(f"  run {attempt} libraries  {name:<40} {seconds:8.2f} s")
        print(f"  run {attempt} libraries: {library_runs[-1]:.2f} s")

        reset_peak()
        started = time.perf_counter()
        report = compute_quality(votes)
        our_runs.append(time.perf_counter() - started)
        our_peak = max(our_peak, peak_mib())
        print(f"  run {attempt} ours (compute_quality): {our_runs[-1]:.2f} s")
    libraries, ours = min(library_runs), min(our_runs)
    print(f"libraries: best {libraries:.2f} s, peak RSS {library_peak:.0f} MiB")
    print(f"ours:      best {ours:.2f} s, peak RSS {our_peak:.0f} MiB")
    print(f"ratio ours / libraries (best runs): {ours / libraries:.3f} (goal: at most 1.2)")

    alpha = report.project.agreement.alpha
    flagged = report.annotators["flagged"].sum()
    print(
        f"found: alpha {alpha:.3f}, {len(report.project.pairs):,} annotator pairs, "
        f"{flagged} of {len(report.annotators)} annotators flagged, "
        f"Dawid-Skene iterations {report.dawid_skene_iterations}"
    )
    flagged_ids = set(report.flagged)
    for number, name in enumerate(KINDS):
        members = np.flatnonzero(kind == number)
        hits = sum(int(a) in flagged_ids for a in members)
        print(f"  {name:<12} {len(members):5d} annotators, {hits:5d} flagged")
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")


if __name__ == "__main__":
    main()
