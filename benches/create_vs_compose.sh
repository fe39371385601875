#!/usr/bin/env bash
# Creating a stack from nothing: 50 services of 2 replicas each (100 containers of the test
# app, each with a health check and a published port), by `gantry apply` and by Debian's
# docker-compose (1.29) `up -d`, one after the other on the same engine, N rounds each.
#
#   benches/create_vs_compose.sh                  # needs Docker and docker-compose; ~6 minutes
#   SERVICES=10 ROUNDS=1 benches/create_vs_compose.sh
#   GANTRY=/path/to/gantry benches/create_vs_compose.sh   # default: a release build of this tree
#
# gantry's figure is the whole command, from launch to exit: every replica created, started,
# and healthy by its HTTP probe (GET /healthz every 100 ms, from the host). docker-compose's
# is `up -d`, which returns once the containers are started and does not wait for health;
# for comparison the script also prints when the engine reported all 100 healthy (its own
# HEALTHCHECK, `/testapp --healthcheck` every 1 s). Both stacks are removed between rounds.
#
# A third figure is the engine alone, the floor of both tools: the same 100 containers (same
# image, published port, log driver and stop timeout) created and started straight on the
# Docker API, all at once, from one Python process, without waiting for health.
#
# Everything created (containers and images, labelled gantry.test-run=<run>; the temporary
# directory) is removed on exit, also on failure or Ctrl-C.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
services="${SERVICES:-50}"
rounds="${ROUNDS:-3}"
compose="${COMPOSE:-docker-compose}"
for tool in docker "$compose" python3; do
    command -v "$tool" >/dev/null || { echo "create_vs_compose: $tool not found" >&2; exit 1; }
done

run="bench-cc-$$-$(date +%s%N)"
export GANTRY_TEST_LABEL="gantry.test-run=$run"
dir="$(mktemp -d)"
cleanup() {
    set +e
    docker ps -aq --filter "label=gantry.test-run=$run" | xargs -r docker rm -f >/dev/null
    docker images -q --filter "label=gantry.test-run=$run" | sort -u \
        | xargs -r docker rmi -f >/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

testapp/build.sh "$run" >/dev/null
image="gantry-testapp:$run"
if [ -z "${GANTRY:-}" ]; then
    cargo build --release -q
    mkdir "$dir/bin" && cp target/release/gantry "$dir/bin/gantry"
    GANTRY="$dir/bin/gantry"
fi

mkdir -p "$dir/gantry" "$dir/compose"
{
    printf '[project]\nname = "bench-cc-%s"\n' "$$"
    for ((s = 1; s <= services; s++)); do
        cat <<TOML

[service.s$s]
image = "$image"
replicas = 2
port = 8080
labels = { "gantry.test-run" = "$run" }
stop_grace_period = "2s"
health = { http = "/healthz", interval = "100ms", timeout = "1s", retries = 50 }
TOML
    done
} > "$dir/gantry/gantry.toml"
{
    printf 'version: "2.4"\nservices:\n'
    for ((s = 1; s <= services; s++)); do
        cat <<YAML
  s$s:
    image: "$image"
    scale: 2
    ports: ["127.0.0.1::8080"]
    labels: { "gantry.test-run": "$run" }
    stop_grace_period: 2s
    healthcheck:
      test: ["CMD", "/testapp", "--healthcheck", "healthz"]
      interval: 1s
      timeout: 1s
      retries: 50
YAML
    done
} > "$dir/compose/docker-compose.yml"

now() { date +%s.%N; }
healthy() {
    # How many of the compose project's containers the engine reports healthy.
    docker ps -q --filter "label=com.docker.compose.project=benchcc$$" --filter health=healthy | wc -l
}
total=$((services * 2))
for ((i = 1; i <= rounds; i++)); do
    t0=$(now)
    (cd "$dir/gantry" && "$GANTRY" apply --yes --progress plain > "$dir/gantry.log" 2>&1) \
        || { cat "$dir/gantry.log" >&2; exit 1; }
    t1=$(now)
    running=$(docker ps -q --filter "label=dev.gantry.project=bench-cc-$$" | wc -l)
    echo "gantry apply:            $(python3 -c "print(f'{$t1 - $t0:6.1f}')") s  ($running containers running, all healthy)"
    docker ps -aq --filter "label=dev.gantry.project=bench-cc-$$" | xargs -r docker rm -f >/dev/null
    rm -rf "$dir/gantry/.gantry"

    python3 - "$total" "$image" "$run" <<'PY'
import http.client, json, socket, sys, threading, time
total, image, run = int(sys.argv[1]), sys.argv[2], sys.argv[3]

class Engine(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("localhost", timeout=600)
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("/var/run/docker.sock")

def call(method, path, body=None):
    c = Engine()
    c.request(method, path, json.dumps(body) if body is not None else None,
              {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
    return data

failed = []

def one(i):
    try:
        start(i)
    except Exception as e:  # reported after every thread is done
        failed.append(e)

def start(i):
    body = {"Image": image, "Labels": {"gantry.test-run": run}, "StopTimeout": 2,
            "ExposedPorts": {"8080/tcp": {}},
            "HostConfig": {"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
                           "LogConfig": {"Type": "json-file"}}}
    cid = json.loads(call("POST", f"/containers/create?name=bench-engine-{run[-12:]}-{i}", body))["Id"]
    call("POST", f"/containers/{cid}/start")

t0 = time.monotonic()
threads = [threading.Thread(target=one, args=(i,)) for i in range(total)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if failed:
    sys.exit(f"engine alone: {len(failed)} of {total} failed, the first: {failed[0]}")
print(f"engine alone (API):      {time.monotonic() - t0:6.1f} s  (create + start, no health)")
PY
    docker ps -aq --filter "label=gantry.test-run=$run" | xargs -r docker rm -f >/dev/null

    t0=$(now)
    (cd "$dir/compose" && "$compose" -p "benchcc$$" up -d > "$dir/compose.log" 2>&1) \
        || { cat "$dir/compose.log" >&2; exit 1; }
    t1=$(now)
    echo "docker-compose up -d:    $(python3 -c "print(f'{$t1 - $t0:6.1f}')") s"
    # The engine's own health checks, for comparison; at most 30 s more (some may never pass).
    while [ "$(healthy)" -lt "$total" ] && python3 -c "import sys; sys.exit($(now) - $t1 >= 30)"; do
        sleep 0.5
    done
    t2=$(now)
    echo "   engine health checks: $(healthy) of $total healthy after $(python3 -c "print(f'{$t2 - $t0:.1f}')") s"
    (cd "$dir/compose" && "$compose" -p "benchcc$$" down -t 2 > /dev/null 2>&1)
done
