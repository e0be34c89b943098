"""Hosts: provision (or find) them, reach them over verified SSH, gate slow disks, prepare them."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from bootstrap.adapters.ansible import PlayResult
from bootstrap.diskgate import SustainedVerdict
from bootstrap.engine.context import StepContext
from bootstrap.engine.step import RetryPolicy
from bootstrap.outputs import (
    Connected,
    CpuGated,
    DiskGated,
    HostsPrepared,
    Provisioned,
    VerifiedKey,
)
from bootstrap.steps import common
from bootstrap.steps.registry import step

if TYPE_CHECKING:
    from bootstrap.adapters.ssh import SSHClient


@step("provision", after=["preflight-escrow"], timeout=1800)
def provision(ctx: StepContext) -> None:
    """Create the hosts the provider describes, or find the ones that already exist."""
    prov = common.provider(ctx)
    wanted = prov.wanted()
    have = {h.name: h for h in prov.observe()}
    missing = [n for n in wanted if n not in have]
    if not missing:
        ctx.noop(f"all {len(wanted)} host(s) exist: {', '.join(wanted)}", target=prov.kind)
    elif ctx.will(_create_line(missing, prov.describe(missing)), target=prov.kind):
        for h in prov.create(missing, lambda m: ctx.progress(m, target=prov.kind)):
            have[h.name] = h
    else:
        return
    ctx.record(Provisioned(hosts=[have[n] for n in wanted]))


def _create_line(missing: list[str], offer: str | None) -> str:
    line = f"create {len(missing)} host(s): {', '.join(missing)}"
    return f"{line} ({offer})" if offer else line


@step(
    "connect",
    after=["provision"],
    timeout=300,
    retry=RetryPolicy(attempts=5, backoff_initial=2, backoff_max=15),
)
def connect(ctx: StepContext) -> None:
    """Reach every host over SSH with a verified host key."""
    from bootstrap.hostkeys import HostKeyExpectation, KnownHostsEntry, PublicKey
    from bootstrap.hostkeys import parse_known_hosts as parse

    known: tuple[KnownHostsEntry, ...] = ()
    kh_file = ctx.site.ssh.known_hosts_file or Path("~/.ssh/known_hosts").expanduser()
    if kh_file.exists():
        known = tuple(parse(kh_file.read_text()))
    # Either the flag or the site file switches first-use trust on; both are audited alike.
    tofu_by = [
        name
        for name, on in (
            ("--trust-on-first-use", ctx.options.trust_on_first_use),
            ("site file ssh.trust_on_first_use", ctx.site.ssh.trust_on_first_use),
        )
        if on
    ]
    tofu = bool(tofu_by)
    if tofu:
        ctx.audit(
            "trust on first use enabled for SSH host keys",
            target="ssh",
            enabled_by=", ".join(tofu_by),
        )
    res = common.resources(ctx)
    keys: dict[str, VerifiedKey] = {}
    for h in common.hosts(ctx):
        expected = HostKeyExpectation(
            provider_key=PublicKey.parse(h.host_public_key) if h.host_public_key else None,
            pinned_fingerprint=h.host_key_fingerprint,
            known_hosts=known,
            trust_on_first_use=tofu,
        )
        ctx.progress("connecting", target=h.name)
        with res.new_ssh(h, expected, ctx.step_id) as client:
            client.run("true", timeout=30)
            trusted = client.trusted_key
        keys[h.name] = VerifiedKey(
            key=trusted.key.openssh(), fingerprint=trusted.fingerprint, source=trusted.source.value
        )
        if trusted.record:
            ctx.audit(
                "trusted SSH host key on first use",
                target=h.name,
                fingerprint=trusted.fingerprint,
                enabled_by=", ".join(tofu_by),
            )
    ctx.record(Connected(host_keys=keys))
    ctx.noop(f"{len(keys)} host(s) reachable, host keys verified", target="ssh")


@step("disk-gate", after=["connect"], timeout=900, retry=RetryPolicy.none())
def disk_gate(ctx: StepContext) -> None:
    """Refuse a disk too slow for etcd (fio p99 fdatasync over the threshold)."""
    from bootstrap import diskgate

    gate = ctx.site.disk_gate
    if not gate.enabled:
        ctx.noop("disk gate disabled in the site file (disk_gate.enabled: false)")
        ctx.record(DiskGated())
        return
    directory = str(ctx.site.etcd_dir())
    reason = ctx.options.accept_slow_disk
    verdicts = []
    sustained: list[SustainedVerdict] = []
    for h in common.servers(ctx):
        client = common.ssh(ctx, h)
        if client.run("command -v fio", check=False, timeout=30).rc != 0:
            ctx.progress("installing fio", target=h.name)
            client.run(
                "apt-get update -q >/dev/null && "
                "DEBIAN_FRONTEND=noninteractive apt-get install -y -q fio",
                timeout=min(600.0, ctx.remaining()),
            )
        ctx.progress(
            f"fio fdatasync job in {directory} ({gate.size} in {gate.block_size}-byte writes)",
            target=h.name,
        )
        argv = diskgate.fio_command(directory, gate.size, gate.block_size)
        cmd = " ".join(shlex.quote(a) for a in argv)
        runtime = int(gate.runtime_limit.total_seconds())
        res = client.run(
            f"mkdir -p {shlex.quote(directory)} && {cmd} --runtime={runtime} "
            f"&& rm -f {shlex.quote(directory)}/{diskgate.FIO_JOB_NAME}.*",
            timeout=runtime + 120,
        )
        verdict = diskgate.judge(res.stdout, host=h.name, threshold_ms=gate.p99_fdatasync_ms)
        verdicts.append(verdict)
        ctx.progress(verdict.summary(), target=h.name)
        if diskgate.enforce(verdict, accept_slow_disk=reason):
            ctx.audit(
                "slow disk accepted by the operator",
                target=h.name,
                p99_ms=verdict.p99_ms,
                threshold_ms=verdict.threshold_ms,
                reason=reason,
            )
        if gate.sustained is not None:
            sustained.append(_sustained_check(ctx, client, h.name, directory, reason))
    ctx.record(DiskGated(verdicts=verdicts, sustained=sustained))
    ctx.noop(
        "; ".join(
            [f"{v.host}: p99 {v.p99_ms:.2f} ms" for v in verdicts]
            + [f"{v.host}: sustained p99 {v.p99_ms:.2f} ms" for v in sustained]
        )
    )


def _sustained_check(
    ctx: StepContext, client: SSHClient, host: str, directory: str, reason: str | None
) -> SustainedVerdict:
    """The sustained write+fdatasync load after the burst (``disk_gate.sustained``)."""
    from bootstrap import diskgate

    gate = ctx.site.disk_gate
    assert gate.sustained is not None
    seconds = gate.sustained.seconds
    ctx.progress(f"fio sustained fdatasync load for {seconds} s in {directory}", target=host)
    argv = diskgate.sustained_command(directory, seconds, gate.size, gate.block_size)
    cmd = " ".join(shlex.quote(a) for a in argv)
    res = client.run(
        f"mkdir -p {shlex.quote(directory)} && {cmd} "
        f"&& rm -f {shlex.quote(directory)}/{diskgate.SUSTAINED_JOB_NAME}.*",
        timeout=seconds + 120,
    )
    verdict = diskgate.judge_sustained(
        res.stdout, host=host, seconds=seconds, threshold_ms=gate.p99_fdatasync_ms
    )
    ctx.progress(verdict.summary(), target=host)
    if diskgate.enforce_sustained(verdict, accept_slow_disk=reason):
        ctx.audit(
            "slow disk (sustained load) accepted by the operator",
            target=host,
            p99_ms=verdict.p99_ms,
            max_ms=verdict.max_ms,
            threshold_ms=verdict.threshold_ms,
            reason=reason,
        )
    return verdict


@step("cpu-gate", after=["disk-gate"], timeout=600, retry=RetryPolicy.none())
def cpu_gate(ctx: StepContext) -> None:
    """Refuse a server whose CPU is stolen (steal) or throttled (probe throughput)."""
    from bootstrap import cpugate

    gate = ctx.site.cpu_gate
    if not gate.enabled:
        ctx.noop("CPU gate disabled in the site file (cpu_gate.enabled: false)")
        ctx.record(CpuGated())
        return
    window = gate.window.total_seconds()
    reason = ctx.options.accept_slow_cpu
    verdicts = []
    for h in common.servers(ctx):
        client = common.ssh(ctx, h)
        ctx.progress(f"CPU probe: {window:g} s on one core, then on every core", target=h.name)
        res = client.run(cpugate.probe_command(window), timeout=4 * window + 60)
        verdict = cpugate.judge(
            res.stdout,
            host=h.name,
            max_steal_percent=gate.max_steal_percent,
            min_throughput_ratio=gate.min_throughput_ratio,
        )
        verdicts.append(verdict)
        ctx.progress(verdict.summary(), target=h.name)
        if cpugate.enforce(verdict, accept_slow_cpu=reason):
            ctx.audit(
                "slow CPU accepted by the operator",
                target=h.name,
                steal_percent=verdict.steal_percent,
                throughput_ratio=verdict.throughput_ratio,
                max_steal_percent=verdict.max_steal_percent,
                min_throughput_ratio=verdict.min_throughput_ratio,
                reason=reason,
            )
    ctx.record(CpuGated(verdicts=verdicts))
    ctx.noop(
        "; ".join(
            f"{v.host}: steal {v.steal_percent:.1f}%, throughput {v.throughput_ratio:.2f}"
            for v in verdicts
        )
    )


@step("prepare-hosts", after=["cpu-gate"], timeout=1800)
def prepare_hosts(ctx: StepContext) -> None:
    """Base packages, time sync, swap off, kernel settings, firewall (Ansible prepare-host)."""
    n = len(common.hosts(ctx))
    if ctx.dry_run:
        ctx.will(f"run prepare-host.yml on {n} host(s) (Ansible reports what changes)")
        return
    result = common.playbook(ctx, "prepare-host.yml")
    ctx.record(HostsPrepared(changed=report_changes(ctx, "prepare-host", result)))


def report_changes(ctx: StepContext, what: str, result: PlayResult) -> dict[str, int]:
    """Say what a playbook changed on each host (or that it changed nothing)."""
    for host, count in result.changed.items():
        if count:
            ctx.changed(f"{what}: {count} task(s) changed", target=host)
    if not any(result.changed.values()):
        ctx.noop(f"{what}: 0 changed on {len(result.changed)} host(s)")
    return dict(result.changed)
