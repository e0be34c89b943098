"""The public host keys drboot pinned for the cloud servers it created, kept between runs.

Why: a run killed between "create requested" and "server running" must, on resume, still
know which host key the server was given, or the first connection would have nothing to
verify against. Only the public half is kept (not a secret); the private half went to the
server in its user data and nowhere else.

Layout: ``<state_root>/cloud/<provider>/<site>/hostkeys/<server>.pub``.
"""

from __future__ import annotations

from pathlib import Path

from bootstrap.fsutil import write_atomic


class PinnedHostKeys:
    """A folder of ``<server>.pub`` files for one provider and site."""

    def __init__(self, state_root: Path, provider: str, site: str) -> None:
        self.dir = state_root / "cloud" / provider / site / "hostkeys"

    def _path(self, server: str) -> Path:
        return self.dir / f"{server}.pub"

    def save(self, server: str, public_openssh: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self._path(server), public_openssh.strip() + "\n", 0o644)

    def get(self, server: str) -> str | None:
        try:
            return self._path(server).read_text().strip() or None
        except FileNotFoundError:
            return None

    def forget(self, server: str) -> None:
        self._path(server).unlink(missing_ok=True)
