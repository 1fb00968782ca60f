"""The benchmark's tables, targets, latency charts and bench/results.md."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import ticker  # noqa: E402

from bench.load import Result  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
MB = 1e6


@dataclass
class BotRun:
    """Everything measured on one bot."""

    training_seconds: float
    startup_seconds: float = math.nan
    levels: dict[int, Result] | None = None
    peak_rss: dict[str, int] | None = None  # bytes, per process: "rasa", "actions"


@dataclass
class Growth:
    early: list[float]  # seconds, turns around 5 of the long conversations
    late: list[float]  # turns around 100
    errors: int

    @property
    def ratio(self) -> float:
        return float(np.median(self.late) / np.median(self.early))


@dataclass
class Size:
    conversations: int
    concurrency: int
    tracker_bytes: int
    result: Result


@dataclass
class Benchmark:
    assistant: BotRun
    reference: BotRun
    growth: Growth
    size: Size
    quick: bool
    seconds_per_level: float
    started: dt.datetime
    machine: str


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs and not math.isnan(ours) and not math.isnan(theirs) else "—"


def _number(value: float, digits: int = 1) -> str:
    return "—" if math.isnan(value) else f"{value:,.{digits}f}"


def _errors(result: Result) -> str:
    empty = f" ({result.empty} empty)" if result.empty else ""
    return f"{result.errors} / {len(result.latencies)}{empty}"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], right_from: int = 1) -> str:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    return "\n".join("| " + " | ".join(row) + " |" for row in [header, tuple(align), *rows])


def load_table(bench: Benchmark) -> str:
    rows = []
    for level, ours in bench.assistant.levels.items():
        theirs = bench.reference.levels[level]
        rows.append((str(level), "messages/s", _number(ours.throughput), _number(theirs.throughput),
                     _ratio(ours.throughput, theirs.throughput)))  # fmt: skip
        for q in (50, 95, 99):
            mine, other = ours.percentile_ms(q), theirs.percentile_ms(q)
            rows.append((str(level), f"p{q} latency (ms)", _number(mine), _number(other), _ratio(mine, other)))
        rows.append((str(level), "errors / answered", _errors(ours), _errors(theirs), ""))
    header = ("concurrent conversations", "measure", "assistant", "reference", "assistant / reference")
    return _table(header, rows, right_from=2)


def resources_table(bench: Benchmark) -> str:
    ours, theirs = bench.assistant, bench.reference
    rasa_ours, rasa_theirs = ours.peak_rss["rasa"] / MB, theirs.peak_rss["rasa"] / MB
    rows = [
        ("full training (s)", _number(ours.training_seconds), _number(theirs.training_seconds),
         _ratio(ours.training_seconds, theirs.training_seconds)),
        ("server start-up (s)", _number(ours.startup_seconds), _number(theirs.startup_seconds),
         _ratio(ours.startup_seconds, theirs.startup_seconds)),
        ("Rasa server peak RSS (MB)", _number(rasa_ours, 0), _number(rasa_theirs, 0), _ratio(rasa_ours, rasa_theirs)),
        ("action server peak RSS (MB)", _number(ours.peak_rss["actions"] / MB, 0), "— (none)", ""),
    ]  # fmt: skip
    return _table(("measure", "assistant", "reference", "assistant / reference"), rows)


def growth_table(bench: Benchmark) -> str:
    growth, size = bench.growth, bench.size
    per_conversation = size.tracker_bytes / size.conversations / 1e3
    rows = [
        ("median latency, turns 3–7 (ms)", _number(np.median(growth.early) * 1000)),
        ("median latency, turns 96–100 (ms)", _number(np.median(growth.late) * 1000)),
        ("turn 100 / turn 5", f"{growth.ratio:.2f}"),
        ("errors in the long conversations", str(growth.errors)),
        (f"tracker store after {size.conversations:,} conversations (MB)", _number(size.tracker_bytes / MB)),
        ("tracker store per conversation (kB)", _number(per_conversation)),
        (f"messages/s while writing them ({size.concurrency} concurrent; errors: {size.result.errors})",
         _number(size.result.throughput)),
    ]  # fmt: skip
    return _table(("measure (assistant)", "value"), rows)


def targets(bench: Benchmark) -> list[tuple[str, str, bool]]:
    ours, theirs = bench.assistant, bench.reference
    reference_throughput = theirs.levels[10].throughput
    throughput_ratio = ours.levels[10].throughput / reference_throughput if reference_throughput else math.nan
    p50_at_1, p95_at_10 = ours.levels[1].percentile_ms(50), ours.levels[10].percentile_ms(95)
    return [
        ("Throughput at 10 conversations ≥ 2× the reference's", f"{throughput_ratio:.2f}×", throughput_ratio >= 2),
        ("p50 at 1 conversation ≤ 25 ms", f"{p50_at_1:.1f} ms", p50_at_1 <= 25),
        ("p95 at 10 conversations ≤ 250 ms", f"{p95_at_10:.1f} ms", p95_at_10 <= 250),
        ("Rasa server RSS ≤ 1.2 GB", f"{ours.peak_rss['rasa'] / 1e9:.2f} GB", ours.peak_rss["rasa"] <= 1.2e9),
        ("Full training ≤ 3 minutes", f"{ours.training_seconds / 60:.1f} min", ours.training_seconds <= 180),
        ("Turn 100 no slower than 1.2× turn 5", f"{bench.growth.ratio:.2f}×", bench.growth.ratio <= 1.2),
    ]  # fmt: skip


def targets_table(bench: Benchmark) -> str:
    rows = [(name, value, "met" if met else "**not met**") for name, value, met in targets(bench)]
    return _table(("target (issue 8)", "measured", ""), rows, right_from=1)


def tables(bench: Benchmark) -> str:
    return "\n\n".join([load_table(bench), resources_table(bench), growth_table(bench), targets_table(bench)])


def latency_charts(bench: Benchmark) -> list[Path]:
    """One PNG per concurrency level: the latency distribution (CDF) of both bots."""
    paths = []
    for level, ours in bench.assistant.levels.items():
        figure, axes = plt.subplots(figsize=(7, 4.2))
        for label, result in (("SOM assistant", ours), ("Rasa reference bot", bench.reference.levels[level])):
            latencies = np.sort(np.array(result.latencies) * 1000)
            if latencies.size:
                axes.step(latencies, np.arange(1, latencies.size + 1) / latencies.size, where="post",
                          label=f"{label} (p50 {np.median(latencies):.0f} ms, n={latencies.size:,})")  # fmt: skip
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axes.xaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
        axes.set_xlabel("latency per message (ms, log scale)")
        axes.set_ylabel("share of messages answered")
        axes.set_title(f"{level} concurrent conversation{'s' if level > 1 else ''}")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(loc="upper left")
        figure.tight_layout()
        path = BENCH_DIR / f"latency_{level}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        paths.append(path)
    return paths


def machine() -> str:
    cpus = len(os.sched_getaffinity(0))
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor() or "unknown",
    )  # fmt: skip
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{cpus} cores ({model}), Python {platform.python_version()}, load average at the start {load}"


def write_results(bench: Benchmark, charts: list[Path]) -> Path:
    mode = (
        f"**quick run** ({bench.seconds_per_level:g} s per level, {bench.size.conversations:,} conversations for "
        "the tracker size, one long conversation): indicative figures only"
        if bench.quick
        else f"full run ({bench.seconds_per_level:g} s per level)"
    )
    chart_list = ", ".join(f"`bench/{path.name}`" for path in charts)
    text = f"""# Benchmark: the SOM assistant against Rasa's reference bot

{bench.started:%Y-%m-%d %H:%M} — {mode}.
Machine: {bench.machine}. Rasa {importlib.metadata.version("rasa")}.

Both bots are trained and served on this machine in the same run, one after the other, with the same
workload (`bench/workload.py`: scripts for the seven audiences, greetings, countries and follow-ups, a
fallback and a hand-off request) sent through the REST channel, each message waiting for its answer.
The assistant runs on the embedded profile (SQLite tracker store, action server); the reference bot is
`rasa init --no-prompt` with its default config and an in-memory tracker store. An error is an HTTP
error, a time-out or, for the assistant, an empty or "technical problem" answer (the reference bot
answers Spanish with its English mood-bot stories and may stay silent, which is not counted).

## Load

{load_table(bench)}

Latency charts (CDF, generated, not committed): {chart_list}.

## Training, start-up and memory

Training is the wall time of `rasa train --force` (assistant) and of `rasa init --no-prompt` (reference,
which trains its default config as it creates the project). Memory is the peak resident set size (the
process and its children) while under load.

{resources_table(bench)}

## Cost growth (assistant)

Turns 3–7 and 96–100 of 100-message conversations carry the same messages; only the history differs.

{growth_table(bench)}

## Targets

{targets_table(bench)}

## Reproduce

```bash
make bench                  # full run: 60 s per level, 10 000 conversations for the tracker size
.venv/bin/python bench/run.py --quick                    # a few minutes, indicative only
.venv/bin/python bench/run.py --seconds 30 --size-conversations 2000
```

Run it on a quiet machine: other processes on the same cores change every figure.
"""
    path = BENCH_DIR / "results.md"
    path.write_text(text, encoding="utf-8")
    return path
