"""TEST ONLY: the drboot CLI with the lab's stand-ins as the cluster plug-in of ``openstack``.

``python -m tests.doubles.drboot_lab_cluster_openstack ARGS`` is ``drboot ARGS`` with the
registration ``tests.doubles.drboot_lab_cluster`` makes for ``hcloud``, made for
``openstack`` too: the restore runs through the OpenStack code path (the provider talks to
OpenStackDouble, whose servers are real lab hosts) while the k3s binary and the controllers
are the lab's stand-ins, as in every lab test. Production drboot never imports this module.
"""

from __future__ import annotations

from bootstrap.providers.plugin import register_plugin
from tests.doubles.drboot_lab_cluster import LabStandinsForCloudDouble

if __name__ == "__main__":
    register_plugin("openstack", LabStandinsForCloudDouble)
    from bootstrap.cli import main

    main()
