"""The apps Git says should exist, at one commit: what the wait waits for.

Why it exists: counting only the apps that happen to exist lets a wait declare victory while an
app of the app-of-apps tree was never created (a typo in a child path, a controller that gave
up). Here the config repo is cloned at the verified commit and the root path rendered the way
preflight renders it (``kubectl kustomize`` where there is a kustomization, else the YAML files
themselves, as Argo CD's directory source and Flux's generated kustomization read them); the
reconciler picks out the apps it declares (``Reconciler.declared_apps``), and each app that
follows a path of the same repo is rendered in turn (app of apps), each path once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bootstrap.adapters import git, kustomize
from bootstrap.errors import PermanentError
from bootstrap.escrow.service import private_files
from bootstrap.kubeapi import Obj
from bootstrap.reconcilers.base import Reconciler

MAX_PATHS = 200  # an app-of-apps tree deeper/wider than this is refused, not walked forever


class MissingPath(PermanentError):
    """A path an app follows is not in the repo (the reconciler reports that app as failing:
    it is waited for, and named, like any other)."""


@dataclass(frozen=True)
class Expected:
    """The apps declared at ``commit`` (``ns/name``), and the paths rendered to find them."""

    commit: str
    apps: frozenset[tuple[str, str]]
    paths: tuple[str, ...]


def _docs(text: str) -> Iterator[Obj]:
    for doc in yaml.safe_load_all(text):
        if isinstance(doc, dict):
            if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
                yield from (d for d in doc["items"] if isinstance(d, dict))
            else:
                yield doc


def render(root: Path, path: str, *, recurse: bool) -> list[Obj]:
    """The objects at ``path`` of a checked-out repo: its kustomize build, or its YAML files
    (in subdirectories too when ``recurse``)."""
    target = (root / path.strip("/").removeprefix("./")).resolve()
    if not target.is_relative_to(root.resolve()):
        raise PermanentError(f"app path {path!r} points outside the repo")
    if not target.is_dir():
        raise MissingPath(f"app path {path!r} does not exist in the repo")
    if kustomize.has_kustomization(target):
        return list(_docs(kustomize.build(target)))
    files = sorted(target.rglob("*") if recurse else target.iterdir())
    out: list[Obj] = []
    for f in files:
        if f.suffix in (".yaml", ".yml", ".json") and f.is_file() and ".git" not in f.parts:
            try:
                out.extend(_docs(f.read_text(errors="replace")))
            except yaml.YAMLError:
                continue  # not YAML until rendered (templates): the reconciler would refuse it too
    return out


def walk(
    rec: Reconciler, repo_url: str, root_path: str, read: Callable[[str, bool], list[Obj]]
) -> tuple[set[tuple[str, str]], list[str]]:
    """The apps declared from ``root_path`` down through app of apps; ``read(path, recurse)``
    renders one path. Returns the apps and the paths rendered."""
    apps: set[tuple[str, str]] = set()
    todo: list[tuple[str, bool]] = [(root_path, rec.renders_recursively())]
    seen: list[str] = []
    while todo:
        path, recurse = todo.pop(0)
        norm = path.strip("/").removeprefix("./") or "."
        if norm in seen:
            continue
        if len(seen) >= MAX_PATHS:
            raise PermanentError(f"the app-of-apps tree has more than {MAX_PATHS} paths")
        seen.append(norm)
        try:
            docs = read(norm, recurse)
        except MissingPath:
            if len(seen) == 1:
                raise  # the root path itself
            continue
        for d in rec.declared_apps(docs, repo_url):
            apps.add((d.namespace, d.name))
            if d.child_path is not None:
                todo.append((d.child_path, d.recurse))
    return apps, seen


def expected_apps(
    rec: Reconciler, *, url: str, commit: str, path: str, deploy_key: str | None,
    known_hosts: str | None,
) -> Expected:  # fmt: skip
    """Clone ``url`` at ``commit`` and walk the app-of-apps tree from ``path``."""
    with (
        tempfile.TemporaryDirectory(prefix="drboot-apps-") as tmp,
        private_files(deploy_key, known_hosts) as (key, known),
    ):
        dest = Path(tmp) / "repo"
        got = git.clone(url, commit, dest, ssh_key_file=key, known_hosts_file=known)

        def read(p: str, recurse: bool) -> list[dict[str, Any]]:
            return render(dest, p, recurse=recurse)

        apps, paths = walk(rec, url, path, read)
    return Expected(got, frozenset(apps), tuple(paths))
