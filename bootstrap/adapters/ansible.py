"""The Ansible adapter: the only module that imports ansible_runner.

Host preparation, the disk gate and the k3s install are Ansible playbooks (``playbooks/``) so
an operator can also run them by hand. This adapter runs them from plain data: it writes the
inventory, a known_hosts file made only of host keys the SSH adapter already verified
(host-key checking is never turned off), and a 0600 vars file for secrets such as the k3s
token (never passed on the command line, never in runner's env files); it turns Ansible's
event stream into small typed progress records, and Ansible failures into
``PermanentError`` / ``TransientError`` naming the task, the host and Ansible's message.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bootstrap import procguard
from bootstrap.errors import PermanentError, TransientError
from bootstrap.fsutil import write_atomic
from bootstrap.hostkeys import TrustedKey, known_hosts_line


def _playbooks_dir() -> Path:
    """The checkout's playbooks/ (editable install), else where a wheel installed them."""
    env = os.environ.get("DRBOOT_PLAYBOOKS_DIR")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[2] / "playbooks"
    if beside.is_dir():
        return beside
    return Path(sys.prefix) / "share" / "drboot" / "playbooks"


PLAYBOOKS_DIR = _playbooks_dir()

EventKind = Literal["task_start", "host_start", "ok", "failed", "unreachable", "skipped", "stats"]


@dataclass(frozen=True)
class InventoryHost:
    """A host as the playbooks see it. ``role`` puts it in ``servers`` or ``agents``."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    role: Literal["server", "agent"] = "server"
    labels: Mapping[str, str] = field(default_factory=dict)  # k3s --node-label, per host


@dataclass(frozen=True)
class PlayEvent:
    """One progress record: which task a host is on, and how it ended."""

    kind: EventKind
    host: str | None = None
    task: str | None = None
    changed: bool | None = False  # None: the result was censored (no_log) so unknown
    message: str | None = None


@dataclass(frozen=True)
class TaskFailure:
    host: str
    task: str
    message: str
    unreachable: bool = False


@dataclass(frozen=True)
class PlayResult:
    ok: bool
    changed: dict[str, int]
    failures: list[TaskFailure] = field(default_factory=list)
    rc: int = 0
    artifacts_dir: Path | None = None

    @property
    def total_changed(self) -> int:
        return sum(self.changed.values())


def build_inventory(
    hosts: Sequence[InventoryHost], group_vars: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """An Ansible YAML/JSON inventory: groups ``servers`` (the first also in
    ``first_server``) and ``agents``; the caller's variables go to ``all``."""
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise PermanentError("duplicate host names in the inventory", hint="fix the site file")

    def hv(h: InventoryHost) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ansible_host": h.address,
            "ansible_port": h.port,
            "ansible_user": h.user,
        }
        if h.labels:
            out["k3s_node_labels"] = dict(h.labels)
        return out

    servers = [h for h in hosts if h.role == "server"]
    agents = [h for h in hosts if h.role == "agent"]
    if not servers:
        raise PermanentError("the inventory has no server", hint="declare at least one server")
    return {
        "all": {
            "vars": dict(group_vars or {}),
            "children": {
                "servers": {"hosts": {h.name: hv(h) for h in servers}},
                "first_server": {"hosts": {servers[0].name: {}}},
                "agents": {"hosts": {h.name: hv(h) for h in agents}},
            },
        }
    }


def _inventory_addresses(inventory: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}

    def walk(group: Mapping[str, Any]) -> None:
        for name, hv in (group.get("hosts") or {}).items():
            hv = hv or {}
            if "ansible_host" in hv or name not in out:
                out[name] = (str(hv.get("ansible_host", name)), int(hv.get("ansible_port", 22)))
        for child in (group.get("children") or {}).values():
            walk(child or {})

    for group in inventory.values():
        walk(group or {})
    return out


def known_hosts_text(inventory: Mapping[str, Any], keys: Sequence[TrustedKey]) -> str:
    """known_hosts lines for every inventory host, from verified keys only."""
    by_addr: dict[tuple[str, int], list[TrustedKey]] = {}
    for k in keys:
        by_addr.setdefault((k.address, k.port), []).append(k)
    lines: list[str] = []
    for name, (addr, port) in sorted(_inventory_addresses(inventory).items()):
        found = by_addr.get((addr, port))
        if not found:
            raise PermanentError(
                f"no verified SSH host key for {name} ({addr}:{port}); refusing to run Ansible "
                "without host-key checking",
                target=name,
                hint="connect to the host with the SSH adapter first so its key is verified",
            )
        lines.extend(known_hosts_line(addr, port, k.key) for k in found)
    return "\n".join(dict.fromkeys(lines)) + "\n"


def _message(res: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for key in ("msg", "stderr", "module_stderr", "stdout", "module_stdout"):
        val = res.get(key)
        if isinstance(val, str) and val.strip() and val.strip() not in parts:
            parts.append(val.strip())
        if len(parts) >= 2:
            break
    text = " | ".join(parts) or "no message"
    return text if len(text) <= 800 else text[:800] + "..."


def translate_event(event: Mapping[str, Any]) -> PlayEvent | None:
    """An ansible-runner event as a progress record (None for events we do not report)."""
    kind = event.get("event")
    data: Mapping[str, Any] = event.get("event_data") or {}
    host = data.get("host")
    task = data.get("task")
    res: Mapping[str, Any] = data.get("res") or {}
    if kind == "playbook_on_task_start":
        return PlayEvent("task_start", task=task)
    if kind == "runner_on_start":
        return PlayEvent("host_start", host=host, task=task)
    if kind == "runner_on_ok":
        changed = None if "censored" in res else bool(res.get("changed"))
        return PlayEvent("ok", host=host, task=task, changed=changed)
    if kind == "runner_on_skipped":
        return PlayEvent("skipped", host=host, task=task)
    if kind == "runner_on_failed":
        if data.get("ignore_errors"):
            return PlayEvent("ok", host=host, task=task, message="failed (ignored)")
        return PlayEvent("failed", host=host, task=task, message=_message(res))
    if kind == "runner_on_unreachable":
        return PlayEvent("unreachable", host=host, task=task, message=_message(res))
    if kind == "playbook_on_stats":
        return PlayEvent("stats", message=json.dumps(data.get("changed") or {}))
    return None


class _Collector:
    def __init__(self, on_event: Callable[[PlayEvent], None] | None) -> None:
        self.on_event = on_event
        self.failures: list[TaskFailure] = []
        self.changed: dict[str, int] = {}
        self.stats_seen = False

    def __call__(self, event: dict[str, Any]) -> bool:
        ev = translate_event(event)
        if ev is None:
            return True
        if ev.kind in ("failed", "unreachable"):
            self.failures.append(
                TaskFailure(
                    host=ev.host or "?",
                    task=ev.task or "?",
                    message=ev.message or "",
                    unreachable=ev.kind == "unreachable",
                )
            )
        elif ev.kind == "stats":
            self.stats_seen = True
            data = event.get("event_data") or {}
            hosts: set[str] = set()
            for key in ("ok", "changed", "failures", "dark", "skipped"):
                hosts.update((data.get(key) or {}).keys())
            self.changed = {h: int((data.get("changed") or {}).get(h, 0)) for h in sorted(hosts)}
        if self.on_event is not None:
            self.on_event(ev)
        return True


def _search_path() -> str:
    """PATH with drboot's own venv first, so its ansible-playbook is the one that runs."""
    path = os.environ.get("PATH", os.defpath)
    if (Path(sys.executable).parent / "ansible-playbook").exists():
        path = f"{Path(sys.executable).parent}{os.pathsep}{path}"
    if shutil.which("ansible-playbook", path=path) is None:
        raise PermanentError(
            "ansible-playbook is not installed", hint="install ansible-core in drboot's venv"
        )
    return path


# What a playbook run needs from the environment: Ansible's and runner's own settings, where
# programs and the home directory are, and the locale. Nothing else is passed on.
_ENV_KEEP = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "TERM", "PYTHONPATH"}
_ENV_KEEP_PREFIXES = ("ANSIBLE_", "RUNNER_", "AWX_", "LC_")


def playbook_env(env: Mapping[str, str], also: Collection[str] = ()) -> dict[str, str]:
    """``env`` cut down to what ``ansible-playbook`` needs: never a ``DRBOOT_*`` variable
    of the caller, only the ones drboot itself set for the run (``also``: the child mark
    that lets a resume find the run's processes; it holds no secret)."""
    return {
        k: v
        for k, v in env.items()
        if k in also
        or ((k in _ENV_KEEP or k.startswith(_ENV_KEEP_PREFIXES)) and not k.startswith("DRBOOT_"))
    }


SECRET_VARS_GLOB = "secret-vars-*.json"


def remove_leftovers(ansible_dir: Path) -> list[Path]:
    """After a run died (kill -9, power cut): remove what only a live run may hold under
    ``ansible_dir`` (one private data dir per step): secret vars files, runner ``env/``
    folders, and the environment kept in each ``artifacts/<id>/command``. Returns what was
    removed or scrubbed. Logs and job events stay for the post-mortem."""
    done: list[Path] = []
    if not ansible_dir.is_dir():
        return done
    for pdd in sorted(p for p in ansible_dir.iterdir() if p.is_dir()):
        for f in sorted(pdd.glob(SECRET_VARS_GLOB)):
            f.unlink(missing_ok=True)
            done.append(f)
        if (pdd / "env").is_dir():
            shutil.rmtree(pdd / "env", ignore_errors=True)
            done.append(pdd / "env")
        for command in sorted(pdd.glob("artifacts/*/command")):
            if _scrub_command_artifact(command.parent):
                done.append(command)
    return done


def _scrub_command_artifact(artifacts: Path | None) -> bool:
    """ansible-runner saves the whole process environment in ``artifacts/<id>/command``;
    drop it (it may hold the escrow passphrase of the calling process)."""
    if artifacts is None:
        return False
    path = artifacts / "command"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    env = doc.get("env") if isinstance(doc, dict) else None
    if not isinstance(env, dict):
        return False
    kept = {k: v for k, v in env.items() if k.startswith("ANSIBLE_") or k == "PATH"}
    if kept == env:
        return False
    doc["env"] = kept
    write_atomic(path, json.dumps(doc).encode())
    return True


def run_playbook(
    playbook: str | Path,
    inventory: Mapping[str, Any],
    extravars: Mapping[str, Any] | None,
    private_data_dir: Path,
    *,
    on_event: Callable[[PlayEvent], None] | None = None,
    ssh_key_file: Path,
    host_keys: Sequence[TrustedKey],
    secret_vars: Mapping[str, Any] | None = None,
    limit: str | None = None,
    timeout: float | None = None,
    connect_timeout: int = 15,
    step: str | None = None,
    check: bool = True,
    children_dir: Path | None = None,
) -> PlayResult:
    """Run one playbook (a name in ``playbooks/`` or a path) and return per-host changes.

    ``secret_vars`` go to a 0600 vars file passed with ``-e @file`` and deleted afterwards;
    the tasks using them carry ``no_log: true``. With ``check`` (default), a failed task raises
    ``PermanentError`` and an unreachable host ``TransientError``.

    ``ansible-playbook`` runs under :func:`bootstrap.procguard.guard_main`: it, its workers and
    its ssh control masters die with drboot, and their mark is recorded in ``children_dir``
    (the run folder's, so a ``resume`` stops whatever a killed guard left).
    """
    import ansible_runner

    pb = Path(playbook)
    if not pb.is_absolute() and not pb.exists():
        pb = PLAYBOOKS_DIR / pb
    if not pb.exists():
        raise PermanentError(f"playbook {pb} not found", step=step, hint="reinstall drboot")
    pdd = Path(private_data_dir)
    (pdd / "inventory").mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(pdd / "inventory" / "hosts.json", json.dumps(inventory, indent=1).encode())
    known_hosts = pdd / "known_hosts"
    write_atomic(known_hosts, known_hosts_text(inventory, host_keys).encode())
    secret_file: Path | None = None
    cmdline = [f"--private-key={Path(ssh_key_file).resolve()}"]
    if secret_vars:
        secret_file = pdd / f"secret-vars-{secrets.token_hex(6)}.json"
        write_atomic(secret_file, json.dumps(dict(secret_vars)).encode())
        cmdline.append(f"--extra-vars=@{secret_file}")
    # ControlPath must fit in a unix socket path (108 bytes): keep it short, not under pdd.
    cp_dir = tempfile.mkdtemp(prefix="drb-cp-")
    record_dir = children_dir or pdd / procguard.CHILDREN_DIR
    mark = procguard.new_mark(record_dir, f"ansible-playbook {pb.name}", match=cp_dir)
    guard = procguard.write_guard_script(pdd / "guarded-ansible-playbook", "ansible-playbook")
    cmdline.append(shlex.quote(str(pb.resolve())))
    ssh_args = " ".join(
        [
            "-o ControlMaster=auto",
            "-o ControlPersist=60s",
            f"-o UserKnownHostsFile={known_hosts}",
            "-o GlobalKnownHostsFile=/dev/null",
            "-o StrictHostKeyChecking=yes",
            "-o IdentitiesOnly=yes",
            "-o BatchMode=yes",
            "-o ServerAliveInterval=5",
            "-o ServerAliveCountMax=3",
        ]
    )
    envvars = {
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": ssh_args,
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": cp_dir,
        "ANSIBLE_SSH_CONTROL_PATH": "%(directory)s/%%C",
        "ANSIBLE_TIMEOUT": str(connect_timeout),
        "ANSIBLE_GATHERING": "smart",
        "ANSIBLE_CACHE_PLUGIN": "jsonfile",
        "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "3600",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
        "ANSIBLE_CONFIG": str(PLAYBOOKS_DIR / "ansible.cfg"),
        "PATH": _search_path(),
        **mark.env(),
    }
    collector = _Collector(on_event)
    try:
        r = ansible_runner.interface.init_runner(
            private_data_dir=str(pdd),
            binary=str(guard),  # runs ansible-playbook; the playbook is the last cmdline arg
            inventory=str(pdd / "inventory" / "hosts.json"),
            extravars=dict(extravars or {}),
            envvars=envvars,
            cmdline=" ".join(cmdline),
            fact_cache=str(pdd / "facts"),  # absolute: shared by every run in this folder
            limit=limit,
            event_handler=collector,
            quiet=True,
            suppress_env_files=True,
            timeout=int(timeout) if timeout else None,
        )
        # Runner seeds the playbook's environment with all of ours (an escrow passphrase
        # variable included) and writes it to artifacts/<id>/command before it starts, where a
        # kill -9 would leave it: hand it only what Ansible needs, before anything is written.
        r.config.env = playbook_env(r.config.env, also=mark.env().keys())
        r.run()
    finally:
        if secret_file is not None:
            secret_file.unlink(missing_ok=True)
        procguard.stop_marked(procguard.ChildMark(mark.token, match=cp_dir))  # ControlPersist
        procguard.forget(record_dir, mark)
        shutil.rmtree(cp_dir, ignore_errors=True)
    rc = int(r.rc if r.rc is not None else -1)
    artifacts = Path(r.config.artifact_dir) if getattr(r, "config", None) else None
    _scrub_command_artifact(artifacts)
    result = PlayResult(
        ok=rc == 0 and not collector.failures,
        changed=collector.changed,
        failures=collector.failures,
        rc=rc,
        artifacts_dir=artifacts,
    )
    if not check or result.ok:
        return result
    name = pb.name
    if r.status == "timeout":
        raise TransientError(
            f"playbook {name} did not finish within {timeout}s",
            step=step,
            hint=f"see the Ansible log in {artifacts}; raise the step timeout for slow hosts",
        )
    unreachable = [f for f in collector.failures if f.unreachable]
    failed = [f for f in collector.failures if not f.unreachable]
    if failed:
        f = failed[0]
        more = f" (and {len(failed) - 1} more failures)" if len(failed) > 1 else ""
        raise PermanentError(
            f"playbook {name}: task '{f.task}' failed on {f.host}: {f.message}{more}",
            step=step,
            target=f.host,
            hint=f"fix the cause on the host, then `drboot resume`; full log in {artifacts}",
        )
    if unreachable:
        f = unreachable[0]
        raise TransientError(
            f"playbook {name}: host {f.host} unreachable during task '{f.task}': {f.message}",
            step=step,
            target=f.host,
            hint="the host or the link is down; the step is retried when it is back",
        )
    out = ""
    with contextlib.suppress(OSError, AttributeError, ValueError):
        out = r.stdout.read()
    tail = out.strip()[-800:] or f"status {r.status}"
    raise PermanentError(
        f"playbook {name} failed (rc {rc}) before running tasks: {tail}",
        step=step,
        hint=f"check the playbook and inventory; full log in {artifacts}",
    )
