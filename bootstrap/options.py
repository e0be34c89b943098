"""The options of one run, as the operator gave them on the command line.

A frozen record, journalled with the run (as JSON, the same keys drboot has always
written) so that ``resume`` goes on with the same decisions. Only references and
operator decisions live here, never secret material.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class RunOptions:
    """What the operator decided for this run (every field audited where it matters)."""

    accept_slow_disk: str | None = None  # go past the disk gate; the reason is audited
    trust_on_first_use: bool = False  # accept unknown SSH host keys once (audited)
    site_dir: str | None = None  # the site file's folder: relative paths resolve against it
    accept_slow_cpu: str | None = None  # go past the CPU gate; the reason is audited
    keep_on_failure: bool = False  # a failed drill keeps its throw-away hosts (to resume)

    def to_json(self) -> dict[str, Any]:
        """The journal form: only what is set (the keys older drboot versions wrote)."""
        out: dict[str, Any] = {}
        if self.accept_slow_disk:
            out["accept_slow_disk"] = self.accept_slow_disk
        if self.accept_slow_cpu:
            out["accept_slow_cpu"] = self.accept_slow_cpu
        if self.trust_on_first_use:
            out["trust_on_first_use"] = True
        if self.site_dir:
            out["site_dir"] = self.site_dir
        if self.keep_on_failure:
            out["keep_on_failure"] = True
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunOptions:
        """Read a journalled row; unknown keys (from another drboot version) are refused."""
        known = {
            "accept_slow_disk", "accept_slow_cpu", "trust_on_first_use", "site_dir",
            "keep_on_failure",
        }  # fmt: skip
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown run option(s) {', '.join(unknown)}")
        slow = data.get("accept_slow_disk")
        slow_cpu = data.get("accept_slow_cpu")
        site_dir = data.get("site_dir")
        return cls(
            accept_slow_disk=str(slow) if slow else None,
            accept_slow_cpu=str(slow_cpu) if slow_cpu else None,
            trust_on_first_use=bool(data.get("trust_on_first_use", False)),
            site_dir=str(site_dir) if site_dir else None,
            keep_on_failure=bool(data.get("keep_on_failure", False)),
        )

    def overridden_by(self, newer: RunOptions) -> RunOptions:
        """These options with what a resume's command line sets on top (never unsets)."""
        return replace(
            self,
            accept_slow_disk=newer.accept_slow_disk or self.accept_slow_disk,
            accept_slow_cpu=newer.accept_slow_cpu or self.accept_slow_cpu,
            trust_on_first_use=newer.trust_on_first_use or self.trust_on_first_use,
            site_dir=self.site_dir or newer.site_dir,
            keep_on_failure=newer.keep_on_failure or self.keep_on_failure,
        )
