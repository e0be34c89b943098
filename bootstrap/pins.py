"""The versions of the upstream manifests this drboot ships (bootstrap/manifests/).

Why it exists: the site file's ``version`` fields must mean something. drboot installs the
pinned, tested manifests it ships, so a site asking for another version is refused at
validation (naming the version this drboot ships) instead of silently getting the pinned one.
"""

from __future__ import annotations

ARGOCD_VERSION = "v3.5.1"
FLUX_VERSION = "v2.9.4"
SEALED_SECRETS_VERSION = "0.36.6"
