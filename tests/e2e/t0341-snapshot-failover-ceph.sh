#!/bin/bash
# t0341-snapshot-failover-ceph: t0340 (a snapshot restored in the
# surviving region after a forced failover) with both regions on Ceph
# pools of the TANDEM_CEPH_* cluster (skipped without one, a failure with
# TANDEM_REQUIRE_CEPH=1).
cd "$(dirname "$0")/../.." || exit 1
TANDEM_T0340_BACKEND=rados exec tests/e2e/t0340-snapshot-failover.sh
