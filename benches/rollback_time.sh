#!/usr/bin/env bash
# Time to roll back 4 replicas behind a real nginx, from typing the command until every replica
# of the previous revision serves: with the fast path (kept containers started again) and
# with --recreate (new containers from the recorded image IDs).
#
#   benches/rollback_time.sh        # needs Docker and nginx; about a minute after the build
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo test --release -q --test lb_nginx rollback_time -- --include-ignored --nocapture 2>&1 \
    | grep -E "^(rollback|test result)" || true
