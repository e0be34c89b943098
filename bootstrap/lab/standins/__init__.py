"""LAB SIMULATIONS of the controllers that cannot run offline (no kubelet, no images).

Why it exists: drboot's restore must be exercised end to end in the lab, where Sealed Secrets,
Argo CD and Flux cannot run. These stand-ins run as one process on the operator's machine,
talk to the (real) API server with a kubeconfig, and behave like the real controllers *from
the outside*: same objects read, same status fields written, same failures. Everything they
create is annotated ``drboot.dev/lab-standin: "true"`` and every log line says
``LAB SIMULATION``. They are never used outside the lab.

    python -m bootstrap.lab.standins --kubeconfig K [--repo-root DIR]

or ``StandinSet(kubeconfig_or_client, ...).start()`` / ``.stop()`` (threads).
"""

from __future__ import annotations

from bootstrap.lab.standins.standinset import StandinSet

__all__ = ["StandinSet"]
