"""drboot: disaster-recovery bootstrap orchestrator for GitOps-managed Kubernetes."""

__version__ = "0.1.0"
