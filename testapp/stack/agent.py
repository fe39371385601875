#!/usr/bin/python3
"""gantry's stand-in for the Datadog agent of seed 000 (shared/seeds/000_*.txt).

Runs in the `agent` image of tests/it/support/stack.rs, installed as /usr/local/bin/agent.

    UDP DD_DOGSTATSD_PORT (8125)  DogStatsD: every datagram is counted and echoed back to
                                  its sender, so a test sees that the UDP port answers
    TCP DD_APM_RECEIVER_PORT (8126)  HTTP/1.1, every path 200 with JSON:
        {"datagrams": N, "last": "<last datagram>", "host_proc": bool, "processes": N,
         "docker_socket": bool, "hostname": "<container hostname>"}
      host_proc: /host/proc is mounted (the agent's `/proc/:/host/proc/:ro`), processes:
      the number of processes seen there (0 without it), docker_socket: whether
      /var/run/docker.sock is there.
    agent --healthcheck           GET http://127.0.0.1:8126/info; exit 0 on 200, else 1

SIGTERM or SIGINT: exit 0.
"""

import http.server
import json
import os
import signal
import socket
import sys
import threading
import urllib.request

UDP_PORT = int(os.environ.get("DD_DOGSTATSD_PORT", "8125"))
TCP_PORT = int(os.environ.get("DD_APM_RECEIVER_PORT", "8126"))
HOST = socket.gethostname()


def log(msg):
    print(f"agent: {msg}", flush=True)


class Stats:
    lock = threading.Lock()
    datagrams = 0
    last = ""


def dogstatsd(sock):
    while True:
        data, peer = sock.recvfrom(65535)
        with Stats.lock:
            Stats.datagrams += 1
            Stats.last = data.decode(errors="replace")
        try:
            sock.sendto(data, peer)
        except OSError:
            pass


def host_processes():
    try:
        return sum(1 for d in os.listdir("/host/proc") if d.isdigit())
    except OSError:
        return 0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gantry-stack-agent"

    def log_message(self, fmt, *args):
        pass

    def route(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        with Stats.lock:
            info = {"datagrams": Stats.datagrams, "last": Stats.last}
        info.update({
            "host_proc": os.path.isdir("/host/proc"),
            "processes": host_processes(),
            "docker_socket": os.path.exists("/var/run/docker.sock"),
            "hostname": HOST,
        })
        data = json.dumps(info, separators=(",", ":")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = route


def main(argv):
    if argv[1:2] == ["--healthcheck"]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{TCP_PORT}/info", timeout=2) as r:
                return 0 if r.status == 200 else 1
        except OSError as e:
            print(e)
            return 1
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", UDP_PORT))
    threading.Thread(target=dogstatsd, args=(udp,), daemon=True).start()
    http.server.ThreadingHTTPServer.daemon_threads = True
    server = http.server.ThreadingHTTPServer(("0.0.0.0", TCP_PORT), Handler)

    def stop(signum, _frame):
        log(f"{signal.Signals(signum).name} received; exit 0")
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"dogstatsd on udp 0.0.0.0:{UDP_PORT}, apm on tcp 0.0.0.0:{TCP_PORT} "
        f"(host={HOST}, host_proc={os.path.isdir('/host/proc')})")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
