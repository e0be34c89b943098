#!/usr/bin/env bash
# Prepare this machine to run drboot lab hosts (systemd-nspawn containers).
#
# Why: the lab is both the integration test bed and the `provider: lab`
# feature; CI and a fresh developer machine must get from nothing to "hosts can
# boot" with one idempotent command. Run as root; safe to run again.
#
#  1. apt-get install the tools the lab drives (nspawn, debootstrap, fio, ...).
#  2. start apt-cacher-ng WITHOUT systemd (PID 1 here may not be systemd),
#     listening on :3142; lab hosts reach apt only through it.
#  3. install the 10.200.0.0/16 blackhole route (lab traffic never leaves).
#  4. build (or reuse) the golden image.
#
# Usage: setup-lab.sh [CACHE_DIR]   (default: /var/cache/drboot-lab)
set -euo pipefail

CACHE_ROOT="${1:-${DRBOOT_LAB_CACHE:-/var/cache/drboot-lab}}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# chromium: tests/integration/test_report_browser.py opens the HTML report headless.
PACKAGES=(systemd-container debootstrap apt-cacher-ng iproute2 fio openssh-client
          e2fsprogs util-linux procps git openssl ca-certificates chromium)
ACNG_PORT=3142

log() { echo "setup-lab: $*" >&2; }
t0=$(date +%s)

[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# drboot renders kustomizations with `kubectl kustomize`; Debian's kubernetes-client
# provides kubectl where the machine has none of its own.
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  # Another apt run (a colleague's setup script) may hold the lock: wait for it.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

# Our own apt-cacher-ng config: a plain caching proxy towards the machine's own
# mirror. The packaged config remaps Debian to ftp.debian.org, which this
# machine may not reach.
ACNG_CONF="$CACHE_ROOT/acng"
install -d -m 0755 "$ACNG_CONF"
cat >"$ACNG_CONF/acng.conf.new" <<EOF
# written by drboot setup-lab.sh
CacheDir: /var/cache/apt-cacher-ng
LogDir: /var/log/apt-cacher-ng
SupportDir: /usr/lib/apt-cacher-ng
Port: $ACNG_PORT
BindAddress: 0.0.0.0
ExThreshold: 4
ReportPage: acng-report.html
EOF
mv "$ACNG_CONF/acng.conf.new" "$ACNG_CONF/acng.conf"

acng_pid() {
  local p
  p="$(cat /run/apt-cacher-ng/pid 2>/dev/null || true)"
  if [ -n "$p" ] && [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' <"/proc/$p/cmdline" | grep -q apt-cacher-ng; then
    echo "$p"
  fi
}
acng_listening() {
  ss -Hltn "sport = :$ACNG_PORT" 2>/dev/null | grep -q LISTEN
}
pid="$(acng_pid)"
if [ -n "$pid" ] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "-c $ACNG_CONF "; then
  log "restarting apt-cacher-ng $pid with the lab config"
  kill "$pid"
  for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  pid=""
fi
if [ -n "$pid" ] && acng_listening; then
  log "apt-cacher-ng $pid already listening on :$ACNG_PORT"
elif acng_listening; then
  log "something else listens on :$ACNG_PORT; lab hosts will use it as their apt proxy"
else
  log "starting apt-cacher-ng on 0.0.0.0:$ACNG_PORT"
  install -d -m 0755 -o apt-cacher-ng -g apt-cacher-ng /run/apt-cacher-ng \
    /var/cache/apt-cacher-ng /var/log/apt-cacher-ng
  start-stop-daemon --start --quiet --chuid apt-cacher-ng --group apt-cacher-ng \
    --pidfile /run/apt-cacher-ng/pid --exec /usr/sbin/apt-cacher-ng -- \
    -c "$ACNG_CONF" pidfile=/run/apt-cacher-ng/pid SocketPath=/run/apt-cacher-ng/socket \
    ForeGround=0
  for _ in $(seq 50); do acng_listening && break; sleep 0.1; done
  acng_listening || { log "apt-cacher-ng did not start; see /var/log/apt-cacher-ng"; exit 1; }
fi

# Before any lab bridge exists: nothing for 10.200/16 may ever leave this machine.
ip route replace blackhole 10.200.0.0/16

IMAGE="$(bash "$HERE/build-golden-image.sh" "$CACHE_ROOT" | tail -n 1)"
log "golden image: $IMAGE"
log "done in $(( $(date +%s) - t0 )) s"
