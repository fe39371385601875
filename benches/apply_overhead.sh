#!/usr/bin/env bash
# Overhead of gantry itself during a rolling update, against the real Docker engine.
#
#   benches/apply_overhead.sh            # builds the test app image, rolls 10 replicas
#
# A rolling update of 10 replicas (batch 1, start-first, health every 100 ms, 200 ms drain
# and 300 ms soak per batch) is applied with `--progress json`. Every step reports its own
# duration; the inherent waits are the steps themselves (container start, health, warm-up,
# drain, stop, soak). gantry's overhead is the wall time of the whole command minus the sum
# of the steps: planning, pre-flight, state writes between steps, process start and exit.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
run="bench-$$-$(date +%s%N)"  # epoch suffix: the tests' reaper reads the last part as a timestamp
export GANTRY_TEST_LABEL="gantry.test-run=$run"
testapp/build.sh "$run-v1" "$run-v2" >/dev/null
cargo build --release -q
gantry="$here/target/release/gantry"
dir="$(mktemp -d)"
cleanup() {
    docker ps -aq --filter "label=gantry.test-run=$run" | xargs -r docker rm -f >/dev/null
    docker images -q --filter "label=gantry.test-run=$run" | xargs -r docker rmi -f >/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

write() {
    cat > "$dir/gantry.toml" <<TOML
[project]
name = "bench-overhead"

[service.web]
image = "gantry-testapp:$run-$1"
replicas = 10
port = 8080
labels = { "gantry.test-run" = "$run" }
stop_grace_period = "5s"
health = { http = "/healthz", interval = "100ms", timeout = "1s" }
rollout = { batch = 1, order = "start-first", drain = "200ms", soak = "300ms" }
TOML
}

write v1
(cd "$dir" && "$gantry" apply --yes --progress json >/dev/null 2>&1)
write v2
start=$(date +%s.%N)
(cd "$dir" && "$gantry" apply --yes --progress json 2>"$dir/events.jsonl" >/dev/null)
end=$(date +%s.%N)

python3 - "$dir/events.jsonl" "$start" "$end" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
wall = float(sys.argv[3]) - float(sys.argv[2])
steps = [e for e in events if e["event"] == "step_finished"]
inherent = sum(e["elapsed_ms"] for e in steps) / 1000
by_kind = {}
for e in steps:
    kind = e["step"].split(" ")[0]
    by_kind[kind] = by_kind.get(kind, 0) + e["elapsed_ms"] / 1000
overhead = wall - inherent
print(f"rolling update of 10 replicas: {len(steps)} steps")
print(f"wall time             {wall:7.2f} s")
print(f"sum of step times     {inherent:7.2f} s  ({', '.join(f'{k} {v:.2f}s' for k, v in sorted(by_kind.items()))})")
print(f"gantry overhead       {overhead:7.2f} s  = {100 * overhead / wall:.1f}% of the total")
PY
