"""The lab provider: throw-away Debian hosts under systemd-nspawn on this machine (root).

Hosts live in a lab named after the site, in ``provider.state_dir`` (default
``/var/lib/drboot-lab/<site>``). Only the hosts are this provider's business; what the lab
supplies beside them (the k3s stand-in bundle, the controller stand-ins, the certificate on
loopback) is the lab's cluster plug-in, registered here for ``provider: lab``. All of it is a
LAB SIMULATION except the hosts, their systemd/sshd/apt, and the Kubernetes API server.
"""

from __future__ import annotations

from pathlib import Path

from bootstrap.lab.hosts import Lab, LabHost
from bootstrap.lab.plugin import LabCluster, lab_state_dir
from bootstrap.lab.standins.process import StandinProcess
from bootstrap.providers.base import HostInfo, Progress
from bootstrap.providers.plugin import register_plugin
from bootstrap.settings import LabProvider, Site

register_plugin("lab", LabCluster)


class LabHosts:
    kind = "lab"
    creates_hosts = True
    manages_ssh_key = True  # each lab makes its operator key when it is created

    def __init__(
        self, site: Site, state_root: Path | None = None, drill_run: str | None = None
    ) -> None:
        assert isinstance(site.provider, LabProvider)
        self.site = site
        self.cfg: LabProvider = site.provider
        self.state_dir = lab_state_dir(site)
        self.lab_dir = self.state_dir / "lab"

    def _roles(self) -> dict[str, str]:
        roles = {f"server-{i + 1}": "server" for i in range(self.cfg.servers)}
        roles.update({f"agent-{i + 1}": "agent" for i in range(self.cfg.agents)})
        return roles

    def wanted(self) -> list[str]:
        return list(self._roles())

    def countries(self) -> dict[str, str | None]:
        """Lab hosts run on this machine, whose country drboot does not know."""
        return {name: None for name in self.wanted()}

    def _lab(self, create: bool = False) -> Lab | None:
        if (self.lab_dir / "lab.json").exists():
            return Lab.attach(self.lab_dir)
        if not create:
            return None
        return Lab.create(self.site.name, self.lab_dir, index=self.cfg.subnet_index)

    def lab(self, *, create: bool = False) -> Lab | None:
        """The site's lab (made with ``create``): the lab commands' way in (the forge)."""
        return self._lab(create)

    def _info(self, host: LabHost) -> HostInfo:
        return HostInfo(
            name=host.name,
            address=host.address,
            role="server" if self._roles().get(host.name) == "server" else "agent",
            ssh_port=22,
            ssh_user="root",
            host_public_key=host.host_public_key,
            provider_id=f"lab:{self.site.name}/{host.name}",
        )

    def observe(self) -> list[HostInfo]:
        lab = self._lab()
        if lab is None:
            return []
        wanted = self._roles()
        return [self._info(h) for h in lab.hosts() if h.name in wanted and h.is_running()]

    def describe(self, names: list[str]) -> str | None:
        return None

    def create(self, names: list[str], progress: Progress) -> list[HostInfo]:
        lab = self._lab(create=True)
        assert lab is not None
        out = []
        etcd_dir = str(self.site.etcd_dir())
        for name in names:
            progress(f"booting lab host {name}")
            host = lab.create_host(name)
            if self._roles()[name] == "server" and not host.disks:
                if self.cfg.disk == "host":  # the host's root fs: this machine's own disk
                    progress(f"{etcd_dir} on {name} stays on the host's own disk")
                elif self.cfg.disk == "slow":
                    progress(f"throttling {etcd_dir} on {name} to {self.cfg.slow_disk_iops} IOPS")
                    host.slow_disk(etcd_dir, self.cfg.slow_disk_iops)
                else:
                    host.fast_disk(etcd_dir, size_mib=512)
            out.append(self._info(host))
        return out

    def destroy(self, progress: Progress) -> list[str]:
        standins = StandinProcess(self.state_dir)
        if standins.pid() is not None:
            progress("stopping the lab controller stand-ins")
        standins.stop()  # its copy of the cluster credentials goes with the cluster
        lab = self._lab()
        if lab is None:
            return []
        names = [h.name for h in lab.hosts()]
        progress(f"destroying lab {lab.name} ({len(names)} hosts)")
        lab.down()
        return names

    def ssh_key_file(self) -> Path | None:
        lab = self._lab()
        return lab.ssh_key_path if lab else None

    def close(self) -> None:
        return None
