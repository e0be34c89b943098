"""Cleaning up after drills: finish an interrupted teardown, list forgotten servers.

Why: a drill's servers cost money until they are gone. The drill destroys them itself, but
a crash (or a kill) can leave them behind. ``teardown_run`` destroys exactly what a drill run
owns (the servers labelled with its run id) from the run's own copy of the site file; it
refuses a restore's run, whose servers are the site's. ``janitor`` lists every
drboot-labelled server of the provider's account older than a given age (read-only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bootstrap.engine.lock import SiteLock
from bootstrap.errors import ConfigError
from bootstrap.providers import provider_for
from bootstrap.providers.cloud.labels import LabelledInventory, LabelledServer
from bootstrap.runs import StateDir, load_run_site
from bootstrap.settings import Site


@dataclass(frozen=True)
class TornDownRun:
    run_id: str
    site: str
    provider: str
    destroyed: list[str]


def teardown_run(state: StateDir, run_id: str, progress: Callable[[str], None]) -> TornDownRun:
    """Destroy the hosts drill ``run_id`` created (what its teardown step would have done)."""
    journal = state.journal()
    try:
        row = journal.run(run_id)
    finally:
        journal.close()
    if row is None:
        raise ConfigError(
            f"no run {run_id} in {state.root}",
            hint="list runs with `drboot status` (and check --state-dir)",
        )
    if row.pipeline != "drill":
        raise ConfigError(
            f"run {run_id} is a {row.pipeline}, not a drill: its servers are the site's",
            hint="drboot tears down only drills; delete a restored site's servers yourself",
        )
    site = load_run_site(state, run_id)
    lock = SiteLock(state.root, str(site.name))
    lock.acquire(f"teardown-{run_id}")  # refused while a live run holds the site
    try:
        prov = provider_for(site, state.root, run_id)
        try:
            destroyed = prov.destroy(progress)
        finally:
            prov.close()
    finally:
        lock.release()
    state.audit.append(
        "drill torn down by `drboot teardown`",
        run_id,
        {"site": site.name, "provider": prov.kind, "destroyed": destroyed},
    )
    return TornDownRun(run_id, str(site.name), prov.kind, destroyed)


def janitor(site: Site, state: StateDir, older_than: timedelta) -> list[LabelledServer]:
    """drboot-labelled servers of the site's provider account older than ``older_than``."""
    prov = provider_for(site, state.root)
    try:
        if not isinstance(prov, LabelledInventory):
            raise ConfigError(
                f"provider {prov.kind} keeps no labelled servers to look after",
                hint="the janitor lists servers of cloud providers (hcloud, openstack)",
            )
        now = datetime.now(UTC)
        found = [s for s in prov.labelled() if s.age(now) >= older_than]
    finally:
        prov.close()
    return sorted(found, key=lambda s: s.created)
