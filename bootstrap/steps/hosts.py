"""Hosts: provision (or find) them, reach them over verified SSH, gate slow disks, prepare them."""

from __future__ import annotations

import shlex
from pathlib import Path

from bootstrap.adapters.ansible import PlayResult
from bootstrap.engine.context import StepContext
from bootstrap.engine.step import RetryPolicy
from bootstrap.outputs import Connected, DiskGated, HostsPrepared, Provisioned, VerifiedKey
from bootstrap.steps import common
from bootstrap.steps.registry import step


@step("provision", after=["preflight-escrow"], timeout=1800)
def provision(ctx: StepContext) -> None:
    """Create the hosts the provider describes, or find the ones that already exist."""
    prov = common.provider(ctx)
    wanted = prov.wanted()
    have = {h.name: h for h in prov.observe()}
    missing = [n for n in wanted if n not in have]
    if not missing:
        ctx.noop(f"all {len(wanted)} host(s) exist: {', '.join(wanted)}", target=prov.kind)
    elif ctx.will(f"create {len(missing)} host(s): {', '.join(missing)}", target=prov.kind):
        for h in prov.create(missing, lambda m: ctx.progress(m, target=prov.kind)):
            have[h.name] = h
    else:
        return
    ctx.record(Provisioned(hosts=[have[n] for n in wanted]))


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
    ctx.record(DiskGated(verdicts=verdicts))
    ctx.noop("; ".join(f"{v.host}: p99 {v.p99_ms:.2f} ms" for v in verdicts))


@step("prepare-hosts", after=["disk-gate"], timeout=1800)
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
