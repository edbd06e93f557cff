#!/bin/sh
# install-deps.sh: install the Debian 12 packages tandem builds and tests
# with, when any is missing.  Says what it installs; does nothing otherwise.
# Needs root or sudo only when something is missing.
set -eu

PKGS="build-essential pkg-config clang libclang-rt-14-dev
libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
libprotobuf-dev librados-dev liblz4-dev libsqlite3-dev libfuse3-dev fuse3
libssl-dev openssl ceph-mon ceph-osd ceph-common uuid-runtime
e2fsprogs xfsprogs util-linux mount fio nodejs npm iproute2 procps psmisc
kmod python3 python3-yaml libcurl4-openssl-dev libjson-c-dev libmount-dev libblkid-dev
kubernetes-client"

missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in
    *" installed") ;;
    *) missing="$missing $p" ;;
    esac
done
# Node.js may come from elsewhere (nodesource); a working node+npm will do.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    missing=$(echo "$missing" | tr ' ' '\n' | grep -vx -e nodejs -e npm | tr '\n' ' ')
fi
# The deploy tests render deploy/regions/* with `kubectl kustomize`:
# kubernetes-client is Debian's kubectl (1.20, kustomize v2.0.3, which the
# overlays are written for).  Any kubectl with a kustomize subcommand will
# do, and another package's kubectl (e.g. google-cloud-sdk's) owns
# /usr/bin/kubectl, which kubernetes-client could not overwrite.
if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
    missing=$(echo "$missing" | tr ' ' '\n' | grep -vx kubernetes-client | tr '\n' ' ')
fi
missing=$(echo $missing)
[ -z "$missing" ] && exit 0

echo "install-deps: installing missing Debian packages: $missing"
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-deps: need root or sudo to install: $missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-deps: done"
