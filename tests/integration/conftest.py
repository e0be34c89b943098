"""Integration fixtures: the real API server and the lab hosts (plugin modules beside this)."""

from tests.integration.conftest_apiserver import (  # noqa: F401
    apiserver,
    kube_bin_dir,
    namespace,
    netns_http_server,
)
from tests.integration.conftest_lab import lab, lab_hosts, lab_ssh  # noqa: F401
