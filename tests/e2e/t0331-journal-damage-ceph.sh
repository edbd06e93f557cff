#!/bin/bash
# t0331-journal-damage-ceph: t0330-journal-damage on Ceph (regions a and b
# are two pools of the test cluster, a RADOS namespace per run); skipped
# without a cluster (failed under TANDEM_REQUIRE_CEPH=1), as t0301.
T0330_BACKEND=rados exec "$(dirname "$0")/t0330-journal-damage.sh"
