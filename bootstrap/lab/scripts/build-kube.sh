#!/usr/bin/env bash
# Build the lab's real Kubernetes control plane (kube-apiserver and
# kube-controller-manager v1.20.2) offline from Debian bookworm's `kubernetes`
# source package with Debian's Go 1.19, and unpack Debian's etcd 3.4.
#
# Why: no Kubernetes server binary is on any registry this machine reaches,
# except as Debian source. The result is cached outside the clone, keyed by the
# source version, so a second run on the same machine is instant.
#
# Usage: build-kube.sh [CACHE_DIR]     (default: /var/cache/drboot-lab)
# Prints the bin directory on the last line of stdout.
set -euo pipefail

SRC_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
CACHE_ROOT="${1:-${DRBOOT_LAB_CACHE:-/var/cache/drboot-lab}}"
KEY="kube-${SRC_VERSION//+/_}-reflect2-1.0.2"
OUT="$CACHE_ROOT/$KEY"
BIN="$OUT/bin"

log() { echo "build-kube: $*" >&2; }

if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] && [ -x "$BIN/etcd" ]; then
  log "cached: $BIN"
  echo "$BIN"
  exit 0
fi

[ "$(id -u)" = 0 ] || { log "must run as root (apt-get)"; exit 1; }
mkdir -p "$OUT"
WORK="$CACHE_ROOT/build"
mkdir -p "$WORK"

need_update=0
for p in golang-1.19-go golang-github-modern-go-reflect2-dev dpkg-dev rsync make; do
  dpkg -s "$p" >/dev/null 2>&1 || need_update=1
done
if [ "$need_update" = 1 ]; then
  log "installing golang-1.19-go, reflect2 1.0.2, dpkg-dev"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-1.19-go golang-github-modern-go-reflect2-dev dpkg-dev rsync make >/dev/null
fi

cd "$WORK"
if ! ls kubernetes_*.dsc >/dev/null 2>&1; then
  log "fetching the kubernetes source package $SRC_VERSION"
  SRCLIST=/etc/apt/sources.list.d/drboot-deb-src.sources
  sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$SRCLIST"
  trap 'rm -f "$SRCLIST"' EXIT
  apt-get update -qq
  apt-get source --download-only "kubernetes=$SRC_VERSION" >/dev/null
  rm -f "$SRCLIST"
  apt-get update -qq
  trap - EXIT
fi

TREE="$WORK/tree"
if [ ! -d "$TREE/vendor" ]; then
  rm -rf "$TREE"
  log "unpacking the source tree"
  dpkg-source --no-check -x kubernetes_*.dsc "$TREE" >/dev/null
fi

# Source fix: vendored reflect2 v1.0.1 makes Go >= 1.18 binaries crash (SIGSEGV)
# when json-iterator encodes a map. Use Debian's 1.0.2 instead.
R2SRC=/usr/share/gocode/src/github.com/modern-go/reflect2
R2DST="$TREE/vendor/github.com/modern-go/reflect2"
if ! grep -q "modern-go/reflect2 v1.0.2" "$TREE/vendor/modules.txt"; then
  log "replacing vendored reflect2 v1.0.1 with Debian's 1.0.2"
  rm -rf "$R2DST"
  mkdir -p "$R2DST"
  cp -r "$R2SRC"/. "$R2DST"/
  find "$R2DST" -name '*_test.go' -delete
  sed -i 's#github.com/modern-go/reflect2 => github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 => github.com/modern-go/reflect2 v1.0.2#' "$TREE/go.mod"
  sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#g' "$TREE/go.mod" "$TREE/vendor/modules.txt"
fi

log "building kube-apiserver and kube-controller-manager (about 5 min on 2 cores)"
(
  cd "$TREE"
  unset GOFLAGS GOPATH GO111MODULE
  export PATH="/usr/lib/go-1.19/bin:$PATH" CGO_ENABLED=0 GOPROXY=off GOTOOLCHAIN=local
  export KUBE_GIT_VERSION="v1.20.2" KUBE_GIT_TREE_STATE=clean KUBE_GIT_COMMIT=debian-bookworm
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$WORK/make.log" 2>&1 || { tail -50 "$WORK/make.log" >&2; exit 1; }
)

mkdir -p "$BIN.tmp"
cp "$TREE"/_output/local/bin/linux/*/kube-apiserver "$TREE"/_output/local/bin/linux/*/kube-controller-manager "$BIN.tmp"/

log "unpacking etcd 3.4 from Debian (no service is started)"
(
  cd "$WORK"
  apt-get download etcd-server etcd-client >/dev/null
  rm -rf etcdx && mkdir etcdx
  for d in etcd-server_*.deb etcd-client_*.deb; do dpkg-deb -x "$d" etcdx; done
)
cp "$WORK"/etcdx/usr/bin/etcd "$WORK"/etcdx/usr/bin/etcdctl "$BIN.tmp"/
rm -rf "$BIN" && mv "$BIN.tmp" "$BIN"
# The tree is large (~2.2 GB); keep only the binaries and the source package.
rm -rf "$TREE" "$WORK/etcdx"
log "done: $BIN"
echo "$BIN"
