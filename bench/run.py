"""`make bench`: the SOM assistant against Rasa's reference bot, in one run on this machine.

    python bench/run.py [--quick] [--seconds S] [--size-conversations N]

Trains both bots (timed), serves each in turn on free ports, sends the fixed workload at 1, 10 and 50
concurrent conversations, measures cost growth on the assistant, then prints the tables and writes
bench/results.md and bench/latency_<N>.png. Servers and temporary folders never outlive the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/run.py` from anywhere

from bench import report, servers  # noqa: E402
from bench.load import PeakMemory, Target, run_conversations, run_for, turn_latencies  # noqa: E402
from bench.workload import EARLY_TURNS, LATE_TURNS, SCRIPTS, long_conversation  # noqa: E402

LEVELS = (1, 10, 50)
SIZE_CONCURRENCY = 10


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 5 s per level, 200 conversations for the size, one long conversation",
    )
    parser.add_argument("--seconds", type=float, help="seconds per concurrency level (default 60; 5 with --quick)")
    parser.add_argument(
        "--size-conversations",
        type=int,
        help="conversations before measuring the tracker store (default 10000; 200 with --quick)",
    )
    arguments = parser.parse_args()  # fmt: skip
    arguments.seconds = arguments.seconds or (5 if arguments.quick else 60)
    arguments.size_conversations = arguments.size_conversations or (200 if arguments.quick else 10_000)
    arguments.long_conversations = 1 if arguments.quick else 3
    return arguments


def under_load(served: servers.Served, run: report.BotRun, seconds: float) -> None:
    """Warm up with every script once, then each concurrency level for `seconds`; peak memory throughout."""
    run.startup_seconds = served.startup_seconds
    with PeakMemory({name: process.pid for name, process in served.processes.items()}) as memory:
        run_conversations(served.target, SCRIPTS.values(), concurrency=1, count=len(SCRIPTS))
        run.levels = {}
        for level in LEVELS:
            result = run_for(served.target, SCRIPTS.values(), level, seconds)
            run.levels[level] = result
            print(f"  {served.target.name}, {level} concurrent: {result.throughput:.1f} messages/s, "
                  f"p50 {result.percentile_ms(50):.0f} ms, p95 {result.percentile_ms(95):.0f} ms, "
                  f"{result.errors} errors, {result.empty} empty answers")  # fmt: skip
    run.peak_rss = memory.peak


def growth(target: Target, conversations: int) -> report.Growth:
    """Latency around turn 5 and turn 100 of `conversations` long conversations, one at a time."""
    early, late, errors = [], [], 0
    for _ in range(conversations):
        latencies = turn_latencies(target, long_conversation())
        errors += sum(latency is None for latency in latencies)
        early += [latencies[turn - 1] for turn in EARLY_TURNS if latencies[turn - 1] is not None]
        late += [latencies[turn - 1] for turn in LATE_TURNS if latencies[turn - 1] is not None]
    return report.Growth(early, late, errors)


def tracker_size(work: Path, model: Path, conversations: int) -> report.Size:
    """The SQLite tracker store's size after `conversations` conversations on a fresh assistant."""
    settings = servers.assistant_settings(work / "size-var")
    with servers.assistant(settings, model, work / "size.log") as served:
        result = run_conversations(served.target, SCRIPTS.values(), SIZE_CONCURRENCY, conversations)
    # Measured once the server stopped, so SQLite's journal is folded back into the file.
    size = sum(path.stat().st_size for path in settings.var_dir.glob(f"{settings.sqlite_path.name}*"))
    return report.Size(conversations, SIZE_CONCURRENCY, size, result)


def benchmark(arguments: argparse.Namespace, work: Path) -> report.Benchmark:
    started, machine = dt.datetime.now(), report.machine()
    print("Training the reference bot (rasa init --no-prompt)…", flush=True)
    reference = report.BotRun(servers.create_reference(work / "reference", work / "reference.log"))
    print(f"  {reference.training_seconds:.0f} s\nTraining the assistant (rasa train --force)…", flush=True)
    settings = servers.assistant_settings(work / "var")
    model, seconds = servers.train_assistant(settings, work / "models", work / "assistant.log")
    assistant = report.BotRun(seconds)
    print(f"  {seconds:.0f} s\nLoad on the reference bot…", flush=True)
    with servers.reference(work / "reference", work / "reference.log") as served:
        under_load(served, reference, arguments.seconds)
    print("Load on the assistant…", flush=True)
    with servers.assistant(settings, model, work / "assistant.log") as served:
        under_load(served, assistant, arguments.seconds)
        print(f"Cost growth: {arguments.long_conversations} conversation(s) of 100 messages…", flush=True)
        cost = growth(served.target, arguments.long_conversations)
    print(f"Tracker store size after {arguments.size_conversations:,} conversations…", flush=True)
    size = tracker_size(work, model, arguments.size_conversations)
    return report.Benchmark(assistant, reference, cost, size, arguments.quick, arguments.seconds, started, machine)


def main() -> int:
    arguments = parse_arguments()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: servers stopped, temp dirs removed
    try:
        with tempfile.TemporaryDirectory(prefix="som-bench-") as work:
            bench = benchmark(arguments, Path(work))
    except KeyboardInterrupt:
        print("\nInterrupted: servers stopped, nothing written.", file=sys.stderr)
        return 130
    charts = report.latency_charts(bench)
    results = report.write_results(bench, charts)
    print("\n" + report.tables(bench) + "\n")
    print(f"Written: {results}, " + ", ".join(path.name for path in charts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
