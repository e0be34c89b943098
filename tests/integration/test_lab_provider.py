"""The lab provider through its interface: find, create, destroy, on real lab hosts.

``provider.subnet_index`` is a site-file field: the lab must put its hosts in exactly that
/24, and refuse one another lab holds (before any host exists).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootstrap.errors import PreflightError
from bootstrap.lab import net
from bootstrap.providers import provider_for
from bootstrap.siteload import load_site_text
from tests.integration.conftest_lab import lab_missing_reason

pytestmark = [pytest.mark.integration, pytest.mark.lab]

SITE = """\
apiVersion: drboot.dev/v1
name: {name}
provider: {{type: lab, state_dir: {state}, subnet_index: {index}}}
escrow: {{backend: age, bundle: kit.age, identity_files: [id.txt]}}
repo: {{url: file:///nonexistent}}
"""


def test_subnet_index_places_the_lab_and_a_taken_one_is_refused(tmp_path: Path) -> None:
    reason = lab_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with net.allocation_lock():
        free = [i for i in range(254, 1, -1) if i not in net.used_indexes()]
    index = free[os.getpid() % min(len(free), 20)]
    first = load_site_text(
        SITE.format(name=f"sub{os.getpid()}", state=tmp_path / "a", index=index), "a.yaml"
    )
    prov = provider_for(first, tmp_path / "state")
    try:
        assert prov.observe() == []
        (host,) = prov.create(["server-1"], lambda m: None)
        assert host.address.startswith(f"10.200.{index}."), host.address
        assert [h.name for h in prov.observe()] == ["server-1"]

        second = load_site_text(
            SITE.format(name=f"sub{os.getpid()}b", state=tmp_path / "b", index=index), "b.yaml"
        )
        other = provider_for(second, tmp_path / "state")
        with pytest.raises(PreflightError, match=f"subnet_index {index}"):
            other.create(["server-1"], lambda m: None)
        assert not (tmp_path / "b" / "lab" / "lab.json").exists(), "nothing half-created"
    finally:
        assert prov.destroy(lambda m: None) == ["server-1"]
    assert prov.observe() == []
