#!/usr/bin/python3
"""gantry's stack test web app: a small HTTP/1.1 server that keeps a counter in redis.

Runs in the `web` image of tests/it/support/stack.rs (Debian bookworm, python3 only: it
speaks RESP to redis over a plain socket, no client library). Installed as
/usr/local/bin/app, so `app serve --port 3308` (the command of seed 000's GraphQL app) works.

    app [serve] [--port N]     serve (PORT env, default 8080) on 0.0.0.0
    app --healthcheck [PATH]   GET http://127.0.0.1:$PORT/PATH (default /healthz):
                               exit 0 on 2xx, 1 otherwise (the image's health command)
    app migrate N              a schema migration: SET schema_version N in redis (never
                               lowers it), printing what it did and, when DB_PASSWORD is
                               set, the password it "connects" with (how the tests see a
                               secret masked in a task's output); exit 0, or 1 on failure
    app migrate fail           a migration that fails: prints an error, exits 1

Requests (GET, HEAD, POST; bodies are read fully, Content-Length or chunked):
    /healthz, /healthcheck  200 "ok" when redis answers PING (and, with REQUIRE_SCHEMA=N,
                            its key schema_version is >= N); 503 with the reason otherwise,
                            and always with NEVER_HEALTHY=1
    /count                  INCR of the redis key COUNTER_KEY (default "count"), answers
                            the new value as text; 503 when redis fails
    /version                VERSION as plain text
    anything else           200 {"version":"<VERSION>","host":"<hostname>"}
    any path ?delay_ms=N    that request takes N ms longer (at most 120000)

Environment: PORT (8080), VERSION ("dev"), REDIS_HOST ("redis"), REDIS_PORT (6379),
COUNTER_KEY ("count"), REQUIRE_SCHEMA (unset), NEVER_HEALTHY ("1": never healthy),
DD_AGENT_HOST (unset; when set, every /count also sends the statsd datagram
"web.count:1|c" to DD_AGENT_HOST:DD_DOGSTATSD_PORT, default 8125, fire and forget).

On SIGTERM or SIGINT it stops accepting, finishes the requests in flight (answering them
with Connection: close), and exits 0. One line per lifecycle event on stdout.
"""

import http.server
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

VERSION = os.environ.get("VERSION", "dev")
HOST = socket.gethostname()
REDIS_HOST = os.environ.get("REDIS_HOST", "redis")
REDIS_PORT = int(os.environ.get("REDIS_PORT", "6379"))
COUNTER_KEY = os.environ.get("COUNTER_KEY", "count")
NEVER_HEALTHY = os.environ.get("NEVER_HEALTHY", "") == "1"
REQUIRE_SCHEMA = os.environ.get("REQUIRE_SCHEMA", "")
AGENT_HOST = os.environ.get("DD_AGENT_HOST", "")
AGENT_PORT = int(os.environ.get("DD_DOGSTATSD_PORT", "8125"))


def log(msg):
    print(f"web: {msg}", flush=True)


class RedisError(Exception):
    pass


def redis(*args):
    """One command on a fresh connection; the reply as str, int or None (nil)."""
    payload = f"*{len(args)}\r\n".encode()
    for a in args:
        b = str(a).encode()
        payload += f"${len(b)}\r\n".encode() + b + b"\r\n"
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=2) as s:
            s.sendall(payload)
            f = s.makefile("rb")
            line = f.readline()
            if not line.endswith(b"\r\n"):
                raise RedisError("connection closed by redis")
            kind, rest = line[:1], line[1:-2].decode()
            if kind == b"+":
                return rest
            if kind == b"-":
                raise RedisError(rest)
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                if n < 0:
                    return None
                return f.read(n + 2)[:n].decode()
            raise RedisError(f"unexpected reply {line!r}")
    except OSError as e:
        raise RedisError(f"{REDIS_HOST}:{REDIS_PORT}: {e}") from e


def health():
    """(healthy, reason)."""
    if NEVER_HEALTHY:
        return False, "unhealthy (NEVER_HEALTHY=1)"
    try:
        pong = redis("PING")
        if pong != "PONG":
            return False, f"redis answered {pong!r} to PING"
        if REQUIRE_SCHEMA:
            have = redis("GET", "schema_version")
            if have is None or int(have) < int(REQUIRE_SCHEMA):
                return False, f"schema_version is {have}, need >= {REQUIRE_SCHEMA}"
    except (RedisError, ValueError) as e:
        return False, f"redis: {e}"
    return True, "ok"


def statsd(metric):
    if not AGENT_HOST:
        return
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(metric.encode(), (AGENT_HOST, AGENT_PORT))
    except OSError as e:
        log(f"statsd to {AGENT_HOST}:{AGENT_PORT}: {e}")


class State:
    lock = threading.Condition()
    in_flight = 0
    served = 0
    stopping = False


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gantry-stack-web"

    def log_message(self, fmt, *args):  # quiet: one line per lifecycle event only
        pass

    def read_body(self):
        if self.headers.get("Expect", "").lower() == "100-continue":
            self.send_response_only(100)
            self.end_headers()
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                self.rfile.read(size + 2)
        n = int(self.headers.get("Content-Length") or 0)
        while n > 0:
            chunk = self.rfile.read(min(n, 65536))
            if not chunk:
                break
            n -= len(chunk)

    def answer(self, status, body, ctype="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Stack-Version", VERSION)
        self.send_header("X-Stack-Host", HOST)
        if State.stopping:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def route(self):
        with State.lock:
            State.in_flight += 1
        try:
            self.read_body()
            path, _, query = self.path.partition("?")
            for param in query.split("&"):
                if param.startswith("delay_ms=") and param[9:].isdigit():
                    time.sleep(min(int(param[9:]), 120000) / 1000)
            if path in ("/healthz", "/healthcheck"):
                ok, reason = health()
                self.answer(200 if ok else 503, reason)
            elif path == "/count":
                try:
                    n = redis("INCR", COUNTER_KEY)
                except RedisError as e:
                    self.answer(503, f"redis: {e}")
                    return
                statsd("web.count:1|c")
                self.answer(200, str(n))
            elif path == "/version":
                self.answer(200, VERSION)
            else:
                body = json.dumps({"version": VERSION, "host": HOST}, separators=(",", ":"))
                self.answer(200, body, "application/json")
        finally:
            with State.lock:
                State.in_flight -= 1
                State.served += 1
                State.lock.notify_all()

    do_GET = do_HEAD = do_POST = route


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections do not hold up the exit
    allow_reuse_address = True


def serve(port):
    started = time.monotonic()
    server = Server(("0.0.0.0", port), Handler)
    log(f"listening on 0.0.0.0:{port} (version={VERSION} host={HOST}, pid={os.getpid()})")

    def stop(signum, _frame):
        with State.lock:
            if State.stopping:
                return
            State.stopping = True
        log(f"{signal.Signals(signum).name} received; closing the listener, "
            "finishing in-flight requests")
        # shutdown() waits for serve_forever, which runs on this (the main) thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.1)
    server.socket.close()
    with State.lock:
        log(f"listener closed; finishing {State.in_flight} in-flight request(s)")
        State.lock.wait_for(lambda: State.in_flight == 0, timeout=60)
        served = State.served
    log(f"exit 0 ({served} requests served in {time.monotonic() - started:.1f}s)")
    return 0


def healthcheck(path):
    port = os.environ.get("PORT", "8080")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            ok = 200 <= r.status < 300
            print(r.read().decode(errors="replace"))
    except urllib.error.HTTPError as e:
        print(f"{e.code} {e.read().decode(errors='replace')}")
        ok = False
    except OSError as e:
        print(e)
        ok = False
    return 0 if ok else 1


def migrate(target):
    password = os.environ.get("DB_PASSWORD", "")
    if password:
        print(f"migrate: connecting with password {password}", flush=True)
    if target == "fail":
        print("migrate: error: relation \"orders\" already exists", flush=True)
        return 1
    try:
        have = redis("GET", "schema_version")
        have = int(have) if have is not None else 0
        if int(target) > have:
            redis("SET", "schema_version", int(target))
        print(f"migrate: schema_version {have} -> {max(have, int(target))}", flush=True)
    except (RedisError, ValueError) as e:
        print(f"migrate: error: {e}", flush=True)
        return 1
    return 0


def main(argv):
    args = argv[1:]
    if args[:1] == ["--healthcheck"]:
        return healthcheck(args[1] if len(args) > 1 else "/healthz")
    if args[:1] == ["migrate"] and len(args) == 2:
        return migrate(args[1])
    if args[:1] == ["serve"]:
        args = args[1:]
    port = int(os.environ.get("PORT", "8080"))
    if args[:1] == ["--port"] and len(args) == 2 and args[1].isdigit():
        port = int(args[1])
    elif args:
        print(f"usage: app [serve] [--port N] | app --healthcheck [PATH] | app migrate N; got {args}",
              file=sys.stderr)
        return 2
    return serve(port)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
