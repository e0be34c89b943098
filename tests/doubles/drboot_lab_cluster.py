"""TEST ONLY: the drboot CLI with the lab's stand-ins as the cluster plug-in of ``hcloud``.

``python -m tests.doubles.drboot_lab_cluster ARGS`` is ``drboot ARGS`` with one registration
more: a site with ``provider: hcloud`` gets ``LabStandinsForCloudDouble`` as its cluster
plug-in. That is how an end-to-end test runs the restore through the Hetzner Cloud code path
(the provider talks to HcloudDouble, whose servers are real lab hosts) while the k3s binary
and the controllers are the lab's stand-ins, as in every lab test. Production drboot never
imports this module; in production a cloud site gets the production plug-in.
"""

from __future__ import annotations

from pathlib import Path

from bootstrap.lab.plugin import LabCluster
from bootstrap.lab.standins.process import StandinProcess
from bootstrap.providers.plugin import register_plugin
from bootstrap.settings import Site


def standin_dir(state_root: Path, site: str) -> Path:
    """Where the stand-ins of a cloud-double site keep their state (under drboot's state)."""
    return state_root / "lab-standins" / site


class LabStandinsForCloudDouble(LabCluster):
    """The lab's cluster plug-in (k3s stand-in bundle, controller stand-ins), for a site whose
    hosts come from a cloud double instead of the lab provider."""

    name = "lab-standins-for-a-cloud-double"

    def __init__(self, site: Site, state_root: Path) -> None:
        self.state_dir = standin_dir(state_root, site.name)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.process = StandinProcess(self.state_dir)
        self.reconciler = str(site.reconciler.type)


def register() -> None:
    register_plugin("hcloud", LabStandinsForCloudDouble)


if __name__ == "__main__":
    register()
    from bootstrap.cli import main

    main()
