#!/usr/bin/env bash
# Time to roll back 4 replicas behind a real nginx, from typing the command until every replica
# of the previous revision serves behind nginx, with the fast path (the kept containers are
# started again) and with --recreate (new containers from the recorded image IDs).
#
#   benches/rollback_time.sh            # needs Docker, nginx and python3; 3-4 minutes
#   ROUNDS=10 benches/rollback_time.sh  # more runs per mode (default 5)
#   GANTRY=/path/to/gantry benches/rollback_time.sh   # default: a release build of this tree
#
# Set-up: the test app image (testapp/build.sh, two tags = two image IDs), a release build of
# gantry, and a private nginx (2 workers) on a free loopback port whose config includes the
# upstream file gantry manages. The service is the one of tests/lb_nginx.rs: 4 replicas,
# health every 100 ms, batch 1 start-first, 1 s drain. Each round applies v2 (not timed), waits
# until nginx answers only v2, then times `gantry rollback --yes --progress json` back to v1;
# the two modes alternate, round by round.
#
# Three figures per run, all from the moment the command is launched:
#
#   serving  every replica of v1 serves behind nginx, and only v1 does. Detected from outside
#            by the process that launches gantry, which polls from that moment on: a check,
#            then a 10 ms pause, then the next check. A check passes when
#              - the upstream file lists exactly 4 servers (none `down`), and
#              - 12 requests for `/` through nginx, each on a fresh connection, all answer 200
#                with version v1, from 4 distinct hosts. The test app answers `/` with
#                {"version": VERSION, "host": <hostname>}; the hostname is the container's
#                (Docker's default: the container ID), so it tells the replicas apart.
#            A check stops at its first failing answer (so the poller adds about one request
#            per 10 ms while v1 does not serve alone) but never passes before all 12. 12 is
#            enough to catch any v2 replica nginx still routes to: one of the 2 workers takes
#            at least 6 of the 12, and its round robin over at most 8 servers (4 v1 + 4 v2)
#            gives no 6 in a row without a v2. The figure is the end of the first passing
#            check after the last failing one (a failure later, up to the exit, resets it): it
#            is late by at most one check plus the pause. For comparison, each run also prints
#            when gantry's own step taking v2 out of nginx ended (file written, `nginx -s
#            reload` returned); the rest is nginx's new workers taking over.
#   health   the duration of gantry's health step (`health #1,#2,#3,#4`, from the
#            step_finished events of --progress json): its own wait for /healthz, polled
#            every 100 ms, after the start (or restart) step returned.
#   exit     the command returns: this also holds the 1 s drain and the stop of the 4 v2
#            replicas, which come after v1 already serves alone.
#
# For comparison, the script ends with the engine alone: 4 stopped containers of the test app
# (published port, as the replicas) started at once straight on the Docker API, from the
# requests to the last answer, ROUNDS times (each stopped again in between, after one start
# that is not timed): the floor of the fast path's restart step.
#
# Everything created (containers and images, labelled gantry.test-run=<run>; the nginx
# instance; the temporary directory) is removed on exit, also on failure or Ctrl-C.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
rounds="${ROUNDS:-5}"
nginx="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
for tool in docker python3 "$nginx"; do
    command -v "$tool" >/dev/null || { echo "rollback_time: $tool not found" >&2; exit 1; }
done

# The run label follows tests/support/docker.rs (`<name>-<pid>-<epoch ns>`): the tests' sweep
# of stale runs leaves it alone while it is fresh, and removes what a killed run left behind.
run="bench-rb-$$-$(date +%s%N)"
export GANTRY_TEST_LABEL="gantry.test-run=$run"
dir="$(mktemp -d)"
cleanup() {
    set +e
    [ -f "$dir/nginx/nginx.pid" ] && "$nginx" -c "$dir/nginx/nginx.conf" -p "$dir/nginx" \
        -e "$dir/nginx/error.log" -s stop 2>/dev/null
    docker ps -aq --filter "label=gantry.test-run=$run" | xargs -r docker rm -f >/dev/null
    docker images -q --filter "label=gantry.test-run=$run" | sort -u \
        | xargs -r docker rmi -f >/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

testapp/build.sh "$run-v1" "$run-v2" >/dev/null
if [ -z "${GANTRY:-}" ]; then
    cargo build --release -q
    GANTRY=target/release/gantry
fi
# A copy: a rebuild during the run (target/ is shared) does not change what is measured.
mkdir "$dir/bin" && cp "$GANTRY" "$dir/bin/gantry"
gantry="$dir/bin/gantry"

# nginx on a free loopback port (the kernel picks it), 2 workers, its own prefix directory.
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
n="$dir/nginx"
mkdir -p "$n/tmp"
echo "upstream app { server 127.0.0.1:9 down; }" > "$n/upstream.conf"
cat > "$n/nginx.conf" <<CONF
worker_processes 2;
pid $n/nginx.pid;
error_log $n/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $n/tmp/body;
    proxy_temp_path $n/tmp/proxy;
    fastcgi_temp_path $n/tmp/fastcgi;
    uwsgi_temp_path $n/tmp/uwsgi;
    scgi_temp_path $n/tmp/scgi;
    include $n/upstream.conf;
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
nargs="\"$nginx\", \"-c\", \"$n/nginx.conf\", \"-p\", \"$n\", \"-e\", \"$n/error.log\""
"$nginx" -c "$n/nginx.conf" -p "$n" -e "$n/error.log"

write() {
    cat > "$dir/gantry.toml" <<TOML
[project]
name = "bench-rollback-$$"

[service.web]
image = "gantry-testapp:$run-$1"
replicas = 4
port = 8080
env = { VERSION = "$run-$1" }
labels = { "gantry.test-run" = "$run" }
stop_grace_period = "10s"
lb = ["front"]
health = { http = "/healthz", interval = "100ms", timeout = "1s", retries = 10 }
rollout = { batch = 1, order = "start-first", drain = "1s" }

[lb.front]
kind = "nginx"
upstream = "app"
upstream_file = "$n/upstream.conf"
check = [$nargs, "-t", "-q"]
reload = [$nargs, "-s", "reload"]
TOML
}

apply() {
    write "$1"
    if ! (cd "$dir" && "$gantry" apply --yes --progress plain >"$dir/apply.log" 2>&1); then
        cat "$dir/apply.log" >&2
        exit 1
    fi
}

apply v1
for ((i = 1; i <= rounds; i++)); do
    for mode in fast recreate; do
        apply v2
        python3 - "$gantry" "$dir" "$port" "$run-v1" "$run-v2" "$mode" "$n/upstream.conf" \
            >> "$dir/results.jsonl" <<'PY'
import json, socket, subprocess, sys, threading, time
from datetime import datetime

gantry, workdir, port, v1, v2, mode, upstream_file = sys.argv[1:]
BURST, PAUSE, GRACE = 12, 0.010, 5.0

def get():
    """GET / through nginx on a fresh connection: (status, version, host), or None."""
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        answer = json.loads(body) if status == 200 else {}
        return status, answer.get("version"), answer.get("host")
    except (OSError, ValueError, IndexError):
        return None

def members():
    """The servers the upstream file lists (none is marked down once gantry wrote it)."""
    with open(upstream_file) as f:
        lines = [l.strip() for l in f if l.strip().startswith("server ")]
    return len(lines) if not any(" down" in l for l in lines) else 0

def burst():
    """Passes when the upstream file lists 4 servers and 12 answers through nginx are all
    200 with v1 from 4 distinct hosts. Stops at the first failing check (so the poller adds
    almost no load while v1 does not yet serve alone); never passes early."""
    if members() != 4:
        return False
    hosts = set()
    for _ in range(BURST):
        a = get()
        if a is None or a[0] != 200 or a[1] != v1:
            return False
        hosts.add(a[2])
    return len(hosts) == 4

# Start from a known state: only v2 serves (nginx reloads asynchronously after apply).
deadline = time.monotonic() + 5
while not all(a is not None and a[1] == v2 for a in [get() for _ in range(BURST)]):
    if time.monotonic() > deadline:
        sys.exit(f"({mode}) v2 does not serve alone behind nginx after apply")
    time.sleep(0.05)

args = [gantry, "rollback", "--yes", "--progress", "json"] + (["--recreate"] if mode == "recreate" else [])
events = open(f"{workdir}/events.jsonl", "w")
t0, wall0 = time.monotonic(), time.time()
proc = subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=events)
exited = []  # the moment the command returns, taken by a thread waiting on it
threading.Thread(target=lambda: (proc.wait(), exited.append(time.monotonic() - t0))).start()
serving = exit_ = None
polls = 0
while True:
    b0 = time.monotonic()
    passed = burst()
    now = time.monotonic()
    polls += 1
    if passed and serving is None:
        serving, burst_ms = now - t0, 1000 * (now - b0)
    elif not passed:
        serving = None
    if exit_ is None and exited:
        exit_ = exited[0]
    # Go on polling after the command returned only while v1 does not yet serve alone.
    if exit_ is not None and (serving is not None or now - t0 > exit_ + GRACE):
        break
    time.sleep(PAUSE)
events.close()
if proc.returncode != 0:
    sys.exit(f"gantry rollback ({mode}) exited {proc.returncode}:\n"
             + open(f"{workdir}/events.jsonl").read()[-4000:])
if serving is None:
    sys.exit(f"({mode}) v1 did not serve alone behind nginx within {GRACE}s of the exit")

steps = [json.loads(l) for l in open(f"{workdir}/events.jsonl") if l.startswith("{")]
steps = [e for e in steps if e.get("event") == "step_finished"]
health = [e for e in steps if e["step"].startswith("health ")]
print(json.dumps({
    "mode": mode,
    "serving": serving,
    "exit": exit_,
    "health": sum(e["elapsed_ms"] for e in health) / 1000,
    "health_steps": [f'{e["step"]} {e["elapsed_ms"]}ms' for e in health],
    # When gantry's step taking the v2 replicas out of nginx finished (file written, nginx
    # reloaded): serving minus this is nginx's reload taking effect plus the poll resolution.
    "left_lb": max((datetime.fromisoformat(e["ts"]).timestamp() - wall0 for e in steps
                    if "(current) leave lb." in e["step"] or "(current) in lb." in e["step"]), default=float("nan")),
    "steps": [f'{e["step"]} {e["elapsed_ms"]}ms' for e in steps],
    "burst_ms": burst_ms,
    "polls": polls,
}))
PY
    done
done

python3 - "$dir/results.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
names = {"fast": "fast path (kept containers started again)",
         "recreate": "--recreate (new containers)"}
for r in runs:
    print(f'{r["mode"]:8}  serving {r["serving"]:5.2f} s  (health {r["health"]:4.2f} s)  '
          f'exit {r["exit"]:5.2f} s   [leave-lb step ended at {r["left_lb"]:.2f} s; '
          f'passing check took {r["burst_ms"]:.0f} ms; '
          f'{"; ".join(r["steps"])}]')
print()
print(f'{"4 replicas, 1 s drain":44} {"serving behind nginx":>22} {"of which health":>16} {"command returns":>16}')
for mode in ("fast", "recreate"):
    rs = [r for r in runs if r["mode"] == mode]
    cell = lambda k: f'{statistics.median(r[k] for r in rs):.2f} / {max(r[k] for r in rs):.2f} s'
    print(f'{names[mode]:44} {cell("serving"):>22} {cell("health"):>16} {cell("exit"):>16}')
print(f'(median / max of {len(runs) // 2} runs each)')
PY

python3 - "gantry-testapp:$run-v1" "$run" "$rounds" <<'PY'
import http.client, json, socket, statistics, sys, threading, time
image, run, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])

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
        raise RuntimeError(f"engine alone: {method} {path}: {r.status} {data[:200]!r}")
    return data

ids = [json.loads(call("POST", f"/containers/create?name=bench-engine-{run[-12:]}-{i}", {
    "Image": image, "Labels": {"gantry.test-run": run}, "StopTimeout": 10,
    "ExposedPorts": {"8080/tcp": {}},
    "HostConfig": {"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}}}))["Id"]
    for i in range(4)]

def all_at_once(op):
    failed = []
    def one(c):
        try:
            call("POST", f"/containers/{c}/{op}")
        except Exception as e:  # reported once every thread is done
            failed.append(e)
    t0 = time.monotonic()
    threads = [threading.Thread(target=one, args=(c,)) for c in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        sys.exit(str(failed[0]))
    return time.monotonic() - t0

all_at_once("start")
all_at_once("stop?t=1")
took = []
for _ in range(rounds):
    took.append(all_at_once("start"))
    all_at_once("stop?t=1")
print(f'{"engine alone: 4 docker starts at once (API)":44} {statistics.median(took):.2f} / {max(took):.2f} s'
      f'  (runs: {", ".join(f"{t:.2f}" for t in took)})')
PY
