#!/bin/bash
# t0400-demo: `make demo` (scripts/demo.sh) as an end-to-end test: two
# regions on loopback, a volume provisioned through CSI, replication,
# kill -9 of region a, failover to b with manifests, file checksums on b,
# region a back and resynced.  The demo prints TAP-style "ok N" lines and
# exits 0 only if every check held.
set -u
cd "$(dirname "$0")/../.." || exit 1
if [ "$(id -u)" -ne 0 ]; then echo "1..0 # SKIP needs root (mounts, loop devices, FUSE)"; exit 77; fi
for dev in /dev/fuse /dev/loop-control; do
    [ -e "$dev" ] || { echo "1..0 # SKIP $dev missing"; exit 77; }
done
export TANDEM_BIN=${TANDEM_BIN:-build}
exec scripts/demo.sh
