#!/usr/bin/env bash
# The zero-downtime proof, at length: real nginx and real HAProxy on loopback in front of 4
# replicas of the test app, two loads at once for the whole of 10 rollouts and 10 roll backs
# each (the same for 10 blue-green releases and 10 switch-backs): 500 requests/s on fresh
# connections and 500 requests/s on 32 keep-alive connections, half of each POSTs (which no
# client retries; a keep-alive GET whose reused connection fails is sent again, as browsers
# and HTTP libraries do). Then the fresh-connection load against a naive recreate (docker
# stop + docker run, no LB coordination) for comparison. Each line says which load it is
# and how many times nginx reloaded.
#
#   benches/zero_downtime.sh            # needs Docker, nginx, haproxy; about 10 minutes
#   GANTRY_ZERO_DOWNTIME_ROUNDS=3 benches/zero_downtime.sh
#   GANTRY_BIN=/path/to/other/gantry benches/zero_downtime.sh   # the same proof, another build
#                                       # (e.g. an older release, for a before/after figure)
#   TESTS="lb_nginx::rollout lb_haproxy::rollout" benches/zero_downtime.sh   # some tests only
#
# The same tests run once per CI run (one rollout and one roll back each); this script only
# raises the number of rounds and adds the naive comparison. Every line of the report is
# printed by the tests themselves.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export GANTRY_ZERO_DOWNTIME_ROUNDS="${GANTRY_ZERO_DOWNTIME_ROUNDS:-10}"
# shellcheck disable=SC2086 # TESTS is a list of test filters
cargo test --release -q --test it -- ${TESTS:-lb_nginx:: lb_haproxy:: blue_green::} \
    --include-ignored --test-threads 1 --nocapture 2>&1 \
    | grep -E "^(nginx|haproxy|HAProxy|before|during|with warm-up|test result)|panicked|assert" || true
