#!/usr/bin/env bash
# The same rolling update over SSH and over the unix socket, in one run (issue 14: the SSH
# overhead must be at most 10 %).
#
#   benches/ssh_overhead.sh            # needs Docker, openssh-server and python3; ~3 minutes
#   ROUNDS=5 benches/ssh_overhead.sh   # rounds per transport (default 3)
#
# Set-up: the test app image (two tags), a release build of gantry, and a private sshd on a
# free loopback port (generated host and client keys, as tests/it/support/sshd.rs) in front of
# this machine's own Docker engine; gantry's `ssh` is the system client with `-F` a private
# config (an `ssh` on PATH). Two projects of 6 replicas each (batch 1, start-first, health
# every 100 ms, 200 ms drain, 300 ms soak): one on `unix:///var/run/docker.sock`, one on
# `ssh://root@127.0.0.1:PORT`. Each round rolls both from v1 to v2 and back (the transports
# alternate), timing each `gantry apply --yes` from launch to exit: pre-flight (the ssh
# connection and `docker version` there included), every engine call, and the end.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
rounds="${ROUNDS:-3}"
for tool in docker python3 /usr/sbin/sshd ssh-keygen; do
    command -v "$tool" >/dev/null || { echo "ssh_overhead: $tool not found" >&2; exit 1; }
done
run="bench-ssh-$$-$(date +%s%N)"  # epoch suffix: the tests' reaper reads it as a timestamp
export GANTRY_TEST_LABEL="gantry.test-run=$run"
testapp/build.sh "$run-v1" "$run-v2" >/dev/null
cargo build --release -q
gantry="$here/target/release/gantry"
dir="$(mktemp -d)"
sshd_pid=""
cleanup() {
    [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
    docker ps -aq --filter "label=gantry.test-run=$run" | xargs -r docker rm -f >/dev/null
    docker images -q --filter "label=gantry.test-run=$run" | xargs -r docker rmi -f >/dev/null
    # The project networks gantry made for the two projects (named after them).
    for kind in ssh unix; do
        docker network rm "bench-ssh-$kind-$$" >/dev/null 2>&1 || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT

# sshd on a free port, keys, client config and the `ssh` gantry finds first on PATH.
mkdir -p /run/sshd "$dir/bin" "$dir/unix" "$dir/ssh"
ssh-keygen -q -t ed25519 -N "" -f "$dir/host_key"
ssh-keygen -q -t ed25519 -N "" -f "$dir/client_key"
cp "$dir/client_key.pub" "$dir/authorized_keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/sshd_config" <<CONF
ListenAddress 127.0.0.1:$port
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
PidFile $dir/sshd.pid
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
MaxSessions 100
MaxStartups 100
LogLevel ERROR
CONF
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/host_key.pub")" > "$dir/known_hosts"
cat > "$dir/ssh_config" <<CONF
Host 127.0.0.1
  IdentityFile $dir/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  GlobalKnownHostsFile /dev/null
  IdentityAgent none
CONF
printf '#!/bin/sh\nexec /usr/bin/ssh -F %s/ssh_config "$@"\n' "$dir" > "$dir/bin/ssh"
chmod +x "$dir/bin/ssh"
/usr/sbin/sshd -D -e -f "$dir/sshd_config" 2>"$dir/sshd.log" &
sshd_pid=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
done

write() {  # write TRANSPORT ENDPOINT TAG
    cat > "$dir/$1/gantry.toml" <<TOML
[project]
name = "bench-ssh-$1-$$"

[[host]]
name = "far"
docker = "$2"

[service.web]
image = "gantry-testapp:$run-$3"
replicas = 6
port = 8080
labels = { "gantry.test-run" = "$run" }
stop_grace_period = "5s"
health = { http = "/healthz", interval = "100ms", timeout = "1s" }
rollout = { batch = 1, order = "start-first", drain = "200ms", soak = "300ms" }
TOML
}
endpoint_unix="unix:///var/run/docker.sock"
endpoint_ssh="ssh://root@127.0.0.1:$port"
apply() {  # apply TRANSPORT TAG -> prints seconds
    local endpoint="endpoint_$1"
    write "$1" "${!endpoint}" "$2"
    local start end
    start=$(date +%s.%N)
    (cd "$dir/$1" && PATH="$dir/bin:$PATH" "$gantry" apply --yes --progress plain >/dev/null 2>"$dir/$1/last.log") \
        || { cat "$dir/$1/last.log" >&2; exit 1; }
    end=$(date +%s.%N)
    python3 -c "print(f'{$end - $start:.3f}')"
}
apply unix v1 >/dev/null
apply ssh v1 >/dev/null
: > "$dir/times"
for r in $(seq "$rounds"); do
    for tag in v2 v1; do
        if [ $((r % 2)) -eq 1 ]; then order="unix ssh"; else order="ssh unix"; fi
        for t in $order; do
            echo "$t $(apply "$t" "$tag")" >> "$dir/times"
        done
    done
done
python3 - "$dir/times" "$rounds" <<'PY'
import statistics, sys
times = {"unix": [], "ssh": []}
for line in open(sys.argv[1]):
    t, s = line.split()
    times[t].append(float(s))
print(f"rolling update of 6 replicas (batch 1), {len(times['unix'])} applies per transport")
for t in ("unix", "ssh"):
    v = times[t]
    print(f"{t:5} median {statistics.median(v):6.2f} s  min {min(v):6.2f} s  max {max(v):6.2f} s  ({', '.join(f'{x:.2f}' for x in v)})")
u, s = statistics.median(times["unix"]), statistics.median(times["ssh"])
print(f"SSH overhead (medians): {s - u:+.2f} s = {100 * (s - u) / u:+.1f} %")
PY
