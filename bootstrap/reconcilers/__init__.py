"""GitOps reconcilers (Argo CD, Flux): their objects and how to read their state, as pure code.

``base`` holds what both share (app state, workload availability, install drift); ``argocd``
and ``flux`` build the objects each reconciler needs and read its status shapes.
"""
