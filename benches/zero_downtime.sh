#!/usr/bin/env bash
# The zero-downtime proof, at length: real nginx and real HAProxy on loopback in front of 4
# replicas of the test app, 500 requests/s (half of them POSTs, which nginx never retries)
# for the whole of 10 rollouts and 10 roll backs each, the same for 10 blue-green releases
# and 10 switch-backs behind nginx, then the same load against a naive recreate (docker
# stop + docker run, no LB coordination) for comparison.
#
#   benches/zero_downtime.sh            # needs Docker, nginx, haproxy; about 5 minutes
#
# The same tests run once per CI run (one rollout and one roll back each); this script only
# raises the number of rounds and adds the naive comparison. Every line of the report is
# printed by the tests themselves.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export GANTRY_ZERO_DOWNTIME_ROUNDS="${GANTRY_ZERO_DOWNTIME_ROUNDS:-10}"
cargo test --release -q --test it -- lb_nginx:: lb_haproxy:: blue_green:: \
    --include-ignored --test-threads 1 --nocapture 2>&1 \
    | grep -E "^(nginx|haproxy|before|during|with warm-up|test result)|panicked|assert" || true
