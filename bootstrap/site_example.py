"""The commented site file that ``drboot init`` writes.

Kept as a string constant (not a packaged YAML file) so that ``init`` works
from a zipapp or a wheel without package-data lookups, and so a unit test can
prove the example itself validates: an example that does not load is worse
than none.
"""

from __future__ import annotations

EXAMPLE_SITE = """\
# drboot site file: everything needed to rebuild one cluster from nothing.
# Check it with `drboot validate site.yaml`; see every field with `drboot schema`.
# Durations: 90s, 5m, 1h30m, 30d or a number of seconds.
# Relative paths are relative to this file; ~ is expanded.
# Secrets never go in this file: use {env: VAR}, {file: PATH} or {escrow: ITEM}.
apiVersion: drboot.dev/v1
kind: Site
name: example                  # DNS label; keys the site lock and the run journal
description: Example site written by `drboot init`

# Where the hosts come from. `static` takes existing machines over SSH;
# `lab` makes throw-away local hosts (see inventory/lab.yaml).
provider:
  type: static
  hosts:
    - name: cp-1
      address: 192.0.2.10      # IP or DNS name
      role: server             # server | agent
      # Pin the host key (ssh-keyscan HOST | ssh-keygen -lf -) or set ssh.trust_on_first_use.
      host_key_fingerprint: SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU
      country: SE              # ISO 3166-1 alpha-2: where the machine is (sovereignty)
    - name: worker-1
      address: 192.0.2.20
      role: agent
      country: SE
      labels:
        node.example.org/pool: general

ssh:
  user: root                   # not root -> sudo is used (override with `sudo:`)
  private_key_file: ~/.ssh/id_ed25519
  connect_timeout: 10s
  command_timeout: 10m

kubernetes:
  version: v1.30.4+k3s1
  topology: single             # single (1 server) | ha (3, 5 or 7 servers)
  install: download            # download | airgap (then set airgap_dir)
  token: {escrow: k3s_token}   # the cluster join token comes from escrow
  api_ready_timeout: 5m

# Refuse a disk too slow for etcd before installing k3s (fio fdatasync p99).
disk_gate:
  enabled: true
  p99_fdatasync_ms: 10
  # sustained: {seconds: 60}   # also a steady load for 60 s (burst-credit volumes fail it)

# Refuse a server whose CPU is stolen (steal) or throttled (a CPU probe against the core count).
cpu_gate:
  max_steal_percent: 5
  min_throughput_ratio: 0.7

# Refuse, before anything is created, hosts or a repo outside these countries
# (quote 'NO': YAML reads a bare NO as false).
sovereignty:
  allowed_countries: ['NO', SE, FI, DK]

# Recovery secrets (Sealed Secrets keys, k3s token, deploy key) in an age bundle.
escrow:
  backend: age
  bundle: escrow/example.age
  identity_files:
    - ~/.config/drboot/example-identity.txt
  # or, instead of identity_files:  passphrase: {env: DRBOOT_ESCROW_PASSPHRASE}

sealed_secrets:
  namespace: kube-system
  version: 0.36.6

reconciler:
  type: argocd                 # argocd | flux
  version: v3.5.1

repo:
  url: git@github.com:example-org/platform-config.git
  revision: main
  path: apps/overlays/prod
  country: SE                  # where the git host keeps the repo (reported, and checked)
  # For ssh URLs these default to the escrowed deploy key and known_hosts:
  deploy_key: {escrow: deploy_key}
  known_hosts: {escrow: known_hosts}

# Done = every app Synced+Healthy and staying so for `stable_for`.
sync_wait:
  timeout: 30m
  poll_interval: 5s
  stable_for: 30s

rto:
  objective: 1h                # the report says whether the restore beat this

report:
  formats: [json, markdown, junit, html]   # html: one page with the timeline picture

# Prometheus metrics of every drill and restore (node-exporter's textfile collector),
# and a webhook told the outcome, RTO and failed step (`drboot schedule install` runs drills):
# metrics:
#   textfile: /var/lib/node_exporter/textfile_collector/drboot.prom
# notify:
#   webhook:
#     url: {env: DRBOOT_WEBHOOK_URL}
#     format: json               # json | slack
"""
