"""GitOps reconcilers (Argo CD, Flux): their objects and how to read their state, as pure code.

``base`` holds the ``Reconciler`` interface and what both share (app state, workload
availability, install drift); ``argocd`` and ``flux`` build the objects each reconciler needs,
read its status shapes, and implement the interface (``ArgoCD``, ``Flux``).
``reconciler_for(settings)`` returns the one a site's ``reconciler`` section names: a new
reconciler is one more entry in ``REGISTRY``, never a branch in a step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bootstrap.errors import ConfigError
from bootstrap.reconcilers.argocd import ArgoCD
from bootstrap.reconcilers.base import Reconciler
from bootstrap.reconcilers.flux import Flux

if TYPE_CHECKING:
    from bootstrap.settings import ArgocdReconciler, FluxReconciler

__all__ = ["REGISTRY", "ArgoCD", "Flux", "Reconciler", "reconciler_for"]

# reconciler.type -> how to build it from its settings section (the section's own model; the
# site schema's discriminator guarantees the pairing, so the factory's argument is Any here).
REGISTRY: dict[str, Callable[[Any], Reconciler]] = {
    "argocd": ArgoCD.from_settings,
    "flux": Flux.from_settings,
}


def reconciler_for(settings: ArgocdReconciler | FluxReconciler) -> Reconciler:
    """The reconciler a site's ``reconciler`` section describes."""
    make = REGISTRY.get(settings.type)
    if make is None:
        raise ConfigError(
            f"reconciler type {settings.type!r} is not implemented",
            hint=f"use reconciler.type: {' or '.join(sorted(REGISTRY))}",
        )
    return make(settings)
