#!/usr/bin/env bash
# The overhead of remote state (issue 15: at most 10 %): the 10-replica rolling update of
# benches/apply_overhead.sh with the state in the local directory and in S3, in one run.
#
#   benches/s3_overhead.sh             # needs Docker, moto_server and python3 with boto3
#   ROUNDS=5 benches/s3_overhead.sh    # applies per backend (default 4)
#
# Set-up: the test app image (two tags), a release build of gantry, and moto (an
# S3-compatible server; conditional writes) on a free loopback port in a process group of its
# own, stopped at the end. Two projects of 10 replicas each (batch 1, start-first, health
# every 100 ms, 200 ms drain, 300 ms soak), one with `[state]` left out (`.gantry/`), one
# with `backend = "s3"`. Each round rolls both from one tag to the other, the backends
# alternating, timing each `gantry apply --yes` from launch to exit: reading the state and
# the journal, the lock and its heartbeat, a journal object per entry, a state write (two
# PUTs) after every step.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
rounds="${ROUNDS:-4}"
for tool in docker python3 moto_server; do
    command -v "$tool" >/dev/null || { echo "s3_overhead: $tool not found" >&2; exit 1; }
done
run="bench-s3-$$-$(date +%s%N)"  # epoch suffix: the tests' reaper reads it as a timestamp
export GANTRY_TEST_LABEL="gantry.test-run=$run"
testapp/build.sh "$run-v1" "$run-v2" >/dev/null
cargo build --release -q
gantry="$here/target/release/gantry"
dir="$(mktemp -d)"
moto_pid=""
cleanup() {
    [ -n "$moto_pid" ] && kill -TERM -- "-$moto_pid" 2>/dev/null || true
    docker ps -aq --filter "label=gantry.test-run=$run" | xargs -r docker rm -f >/dev/null
    docker images -q --filter "label=gantry.test-run=$run" | xargs -r docker rmi -f >/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

setsid moto_server -H 127.0.0.1 -p 0 >/dev/null 2>"$dir/moto.log" &
moto_pid=$!
port=""
for _ in $(seq 1 100); do
    port="$(grep -o 'Running on http://127.0.0.1:[0-9]*' "$dir/moto.log" | grep -o '[0-9]*$' || true)"
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "moto did not start" >&2; cat "$dir/moto.log" >&2; exit 1; }
endpoint="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true
python3 -c "import boto3; boto3.client('s3', endpoint_url='$endpoint', region_name='us-east-1').create_bucket(Bucket='gantry-bench')"

write() { # backend tag
    mkdir -p "$dir/$1"
    {
        cat <<TOML
[project]
name = "bench-state-$1"

[service.web]
image = "gantry-testapp:$run-$2"
replicas = 10
port = 8080
labels = { "gantry.test-run" = "$run" }
stop_grace_period = "5s"
health = { http = "/healthz", interval = "100ms", timeout = "1s" }
rollout = { batch = 1, order = "start-first", drain = "200ms", soak = "300ms" }
TOML
        if [ "$1" = s3 ]; then
            printf '\n[state]\nbackend = "s3"\nbucket = "gantry-bench"\nkey = "bench"\nregion = "us-east-1"\nendpoint = "%s"\n' "$endpoint"
        fi
    } > "$dir/$1/gantry.toml"
}

apply() { # backend -> seconds
    local start end
    start=$(date +%s%N)
    (cd "$dir/$1" && "$gantry" apply --yes --progress plain >>"$dir/$1/log" 2>&1)
    end=$(date +%s%N)
    echo "$(( (end - start) / 1000000 ))e-3"
}

for b in local s3; do write "$b" v1; apply "$b" >/dev/null; done
: > "$dir/times"
tag=v1
for r in $(seq 1 "$rounds"); do
    if [ "$tag" = v1 ]; then tag=v2; else tag=v1; fi
    order="local s3"; [ $((r % 2)) -eq 0 ] && order="s3 local"
    for b in $order; do
        write "$b" "$tag"
        echo "$b $(apply "$b")" >> "$dir/times"
    done
done

python3 - "$dir/times" "$rounds" <<'PY'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    b, t = line.split()
    times.setdefault(b, []).append(float(t))
med = {b: statistics.median(v) for b, v in times.items()}
for b in ("local", "s3"):
    v = times[b]
    print(f"{b:5} state: median {med[b]:6.2f} s  ({min(v):.2f}-{max(v):.2f}, {len(v)} applies)")
over = med["s3"] - med["local"]
print(f"remote state overhead: {over:+.2f} s = {100 * over / med['local']:+.1f} %")
PY
