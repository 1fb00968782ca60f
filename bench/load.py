"""The load generator (REST channel, asyncio + aiohttp) and the memory sampler."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=120)


@dataclass(frozen=True)
class Target:
    """A running bot as the load generator sees it."""

    name: str
    url: str
    expects_answers: bool  # an empty answer is an error
    failure_texts: frozenset[str] = frozenset()  # answers that mean the bot failed


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)  # seconds, answered messages only
    errors: int = 0
    empty: int = 0  # empty answers (errors only when the target expects answers)
    elapsed: float = 0.0

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")


async def _say(session: aiohttp.ClientSession, target: Target, sender: str, text: str, result: Result) -> float | None:
    """Send one message and record it; the latency if it was answered, else None."""
    started = time.perf_counter()
    try:
        async with session.post(
            f"{target.url}/webhooks/rest/webhook", json={"sender": sender, "message": text}
        ) as response:
            answer = await response.json() if response.status == 200 else None
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        answer = None
    latency = time.perf_counter() - started
    texts = {message.get("text") for message in answer or ()}
    if answer == []:
        result.empty += 1
    if answer is None or texts & target.failure_texts or (not answer and target.expects_answers):
        result.errors += 1
        return None
    result.latencies.append(latency)
    return latency


async def _converse(
    target: Target, scripts: Iterator[tuple[str, ...]], concurrency: int, deadline: float | None
) -> Result:
    result = Result()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as session:

        async def conversation_worker() -> None:
            for script in scripts:  # the iterator is shared: each script is taken once
                sender = f"bench-{uuid.uuid4().hex}"
                for text in script:
                    if deadline is not None and time.monotonic() >= deadline:
                        return
                    await _say(session, target, sender, text, result)

        started = time.monotonic()
        await asyncio.gather(*(conversation_worker() for _ in range(concurrency)))
        result.elapsed = time.monotonic() - started
    return result


def run_for(target: Target, scripts: Iterable[tuple[str, ...]], concurrency: int, seconds: float) -> Result:
    """`concurrency` conversations at a time, cycling through `scripts`, for `seconds`."""
    deadline = time.monotonic() + seconds
    return asyncio.run(_converse(target, itertools.cycle(scripts), concurrency, deadline))


def run_conversations(target: Target, scripts: Iterable[tuple[str, ...]], concurrency: int, count: int) -> Result:
    """`count` conversations, `concurrency` at a time, cycling through `scripts`."""
    return asyncio.run(_converse(target, itertools.islice(itertools.cycle(scripts), count), concurrency, None))


def turn_latencies(target: Target, script: tuple[str, ...]) -> list[float | None]:
    """One conversation, message by message: each turn's latency (None for an error)."""

    async def talk() -> list[float | None]:
        result, sender = Result(), f"bench-{uuid.uuid4().hex}"
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
            return [await _say(session, target, sender, text, result) for text in script]

    return asyncio.run(talk())


# --- memory ---------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    return children


def _rss(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone
        return 0
    return next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)


def tree_rss(pid: int, children: dict[int, list[int]]) -> int:
    """Resident memory in bytes of a process and all its descendants."""
    return _rss(pid) + sum(tree_rss(child, children) for child in children.get(pid, ()))


class PeakMemory:
    """Samples the resident memory of named processes in a thread; keeps each one's peak."""

    def __init__(self, pids: dict[str, int], interval: float = 0.5) -> None:
        self.pids = pids
        self.interval = interval
        self.peak = {name: 0 for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            children = _children()
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], tree_rss(pid, children))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
