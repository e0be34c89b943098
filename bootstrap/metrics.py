"""Prometheus metrics of drills and restores, for node-exporter's textfile collector.

Why it exists: a drill nobody watches is no drill. At the end of every drill and restore
(success or failure) drboot rewrites one textfile (the site's ``metrics.textfile``) so a
user's existing alerting can page when drills stop succeeding or stop running.

Several sites (and both kinds of run) may share one file: the samples of other
``(site, kind)`` pairs already in the file are kept, ours are replaced. The file is written
atomically (tmp, fsync, rename) and world-readable (0644): node-exporter usually runs as
another user, and the file holds no secret. ``prometheus_client`` renders the exposition
format; this module is its only importer.
"""

from __future__ import annotations

import fcntl
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bootstrap.fsutil import write_atomic
from bootstrap.history import Outcome

PREFIX = "drboot_"


@dataclass(frozen=True)
class Family:
    """A gauge the textfile holds: its name (without ``PREFIX``), help, and extra labels."""

    name: str
    help: str
    labels: tuple[str, ...] = ()


LAST_SUCCESS = Family("last_run_success", "1 if the last run of this kind succeeded, else 0.")
LAST_TIMESTAMP = Family("last_run_timestamp_seconds", "When the last run of this kind ended.")
LAST_OK_TIMESTAMP = Family(
    "last_success_timestamp_seconds", "When the last successful run of this kind ended."
)
RTO = Family("rto_seconds", "RTO of the last run: start to every app Synced+Healthy.")
OBJECTIVE = Family("rto_objective_seconds", "The site's RTO objective.")
OBJECTIVE_MET = Family(
    "rto_objective_met", "1 if the last run restored within its RTO objective, else 0."
)
STEP = Family("step_duration_seconds", "Duration of each step in the last run.", ("step",))
FAMILIES = (LAST_SUCCESS, LAST_TIMESTAMP, LAST_OK_TIMESTAMP, RTO, OBJECTIVE, OBJECTIVE_MET, STEP)

Sample = tuple[Family, dict[str, str], float]


def samples(outcome: Outcome, previous_success_at: float | None) -> Iterator[Sample]:
    """The samples of one run. ``previous_success_at`` carries the last success over a failure."""
    labels = {"site": outcome.site, "kind": outcome.kind}
    ended = outcome.ended if outcome.ended is not None else outcome.started
    yield LAST_SUCCESS, labels, 1.0 if outcome.succeeded else 0.0
    yield LAST_TIMESTAMP, labels, ended
    success_at = ended if outcome.succeeded else previous_success_at
    if success_at is not None:
        yield LAST_OK_TIMESTAMP, labels, success_at
    if outcome.rto_seconds is not None:
        yield RTO, labels, outcome.rto_seconds
    if outcome.objective_seconds is not None:
        yield OBJECTIVE, labels, outcome.objective_seconds
    yield OBJECTIVE_MET, labels, 1.0 if outcome.succeeded and outcome.objective_met else 0.0
    for step, seconds in outcome.step_seconds.items():
        yield STEP, labels | {"step": step}, seconds


def render(items: Iterable[Sample]) -> bytes:
    """The exposition text of ``items`` (every family declared, even when empty)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector

    grouped: dict[str, list[tuple[dict[str, str], float]]] = {f.name: [] for f in FAMILIES}
    for family, labels, value in items:
        grouped[family.name].append((labels, value))

    class _Collector(Collector):
        def collect(self) -> Iterator[GaugeMetricFamily]:
            for family in FAMILIES:
                names = ["site", "kind", *family.labels]
                gauge = GaugeMetricFamily(PREFIX + family.name, family.help, labels=names)
                rows = sorted(grouped[family.name], key=lambda s: sorted(s[0].items()))
                for labels, value in rows:
                    gauge.add_metric([labels[n] for n in names], value)
                yield gauge

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry)


def existing(path: Path) -> list[Sample]:
    """The samples of our families already in ``path`` (nothing if absent or unreadable)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return []
    by_name = {PREFIX + f.name: f for f in FAMILIES}
    found: list[Sample] = []
    try:
        for fam in text_string_to_metric_families(text):
            family = by_name.get(fam.name)
            if family is None:
                continue
            for s in fam.samples:
                if "site" in s.labels and "kind" in s.labels and not math.isnan(s.value):
                    found.append((family, dict(s.labels), float(s.value)))
    except ValueError:
        return []  # a corrupt file is rewritten from this run alone
    return found


def write(path: Path, outcome: Outcome) -> Path:
    """Rewrite ``path`` with ``outcome``'s samples, keeping other sites' and kinds'.

    Two sites' runs ending at once (two timers on the same minute) both read, merge and
    rename: an exclusive flock on ``PATH.lock`` (node-exporter reads only ``*.prom``) makes
    the second merge the first's samples instead of dropping them.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _merge(path, outcome)
    finally:
        os.close(fd)


def _merge(path: Path, outcome: Outcome) -> Path:
    ours = {"site": outcome.site, "kind": outcome.kind}
    old = existing(path)
    previous_ok = next(
        (v for f, labels, v in old
         if f == LAST_OK_TIMESTAMP and all(labels.get(k) == x for k, x in ours.items())),
        None,
    )  # fmt: skip
    kept = [s for s in old if any(s[1].get(k) != x for k, x in ours.items())]
    return write_atomic(path, render([*kept, *samples(outcome, previous_ok)]), mode=0o644)
