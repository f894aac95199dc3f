#!/usr/bin/env python3
"""The hostile-client attacks of issue 9, re-run against a ringcast build, one fresh server each.

Each attack runs while a live stream plays (`ringcast-loadtest broadcast`, 1 publisher and 5
viewers, from 127.0.0.1); the attacker uses other loopback addresses (127.0.0.2 and up), so the
per-client limits see it as another client. For every attack the table gives what the attacker
got, the loss on the live stream, and the server's RSS before and after.

    scripts/attack.py [--bin target/release/ringcast] [--loadtest target/release/ringcast-loadtest]
                      [--only NAME ...] [--json PATH]

Not part of the test suite: it takes a few minutes and opens tens of thousands of sockets.
Traffic goes only to loopback.
"""

import argparse
import http.client
import json
import os
import pathlib
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
OFFER = (ROOT / "tests/fixtures/sdp/chromium-whip.sdp").read_text().split("---- answer ----")[0]
# A viewer's offer: the same session asking to receive.
VIEWER_OFFER = OFFER.replace("a=sendonly", "a=recvonly")
CONFIG = """
[streams."paid"]
publish_token = "stream-key"
view_token = "view-key"
"""


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Server:
    """A fresh ringcast on loopback with 2 shards and a token-protected stream `paid`."""

    def __init__(self, binary, env=None):
        self.port = free_port()
        self.dir = tempfile.TemporaryDirectory()
        config = pathlib.Path(self.dir.name) / "ringcast.toml"
        config.write_text(CONFIG)
        self.log = open(pathlib.Path(self.dir.name) / "log", "w+")
        full_env = dict(os.environ)
        full_env.update(
            {
                "RINGCAST_HTTP_LISTEN": f"127.0.0.1:{self.port}",
                "RINGCAST_MEDIA_SHARDS": "2",
                "RINGCAST_MEDIA_PIN_THREADS": "false",
                "RINGCAST_MEDIA_BIND": "127.0.0.1",
                "RINGCAST_MEDIA_PORT_BASE": str(free_port(socket.SOCK_DGRAM)),
                "RINGCAST_CONFIG": str(config),
            }
        )
        full_env.update(env or {})
        self.proc = subprocess.Popen([binary], env=full_env, stdout=self.log, stderr=self.log)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("ringcast did not start")

    def request(self, method, path, body=None, headers=None, source="127.0.0.1", timeout=5):
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=timeout, source_address=(source, 0)
        )
        try:
            conn.request(method, path, body=body, headers=headers or {})
            res = conn.getresponse()
            return res.status, dict(res.getheaders()), res.read()
        finally:
            conn.close()

    def rss(self):
        return rss_kib(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        self.dir.cleanup()


class LiveStream:
    """1 publisher and 5 viewers for `seconds`, measured by ringcast-loadtest."""

    def __init__(self, loadtest, server, seconds):
        self.out = tempfile.NamedTemporaryFile(suffix=".json", delete=False)
        self.proc = subprocess.Popen(
            [
                loadtest, "broadcast", "--url", f"http://127.0.0.1:{server.port}",
                "--streams", "1", "--viewers", "5", "--duration", f"{seconds}s",
                "--warmup", "1s", "--threads", "1", "--verify-fraction", "1",
                "--json", self.out.name,
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def loss(self):
        self.proc.wait()
        try:
            summary = json.loads(pathlib.Path(self.out.name).read_text())
        except (OSError, ValueError):
            return None
        finally:
            os.unlink(self.out.name)
        viewers = summary.get("viewers", {})
        return {"loss_pct": summary.get("loss_pct"), "viewers": viewers}


def post_offer(server, path, source, token=None, timeout=5):
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    offer = VIEWER_OFFER if path.startswith("/whep/") else OFFER
    return server.request("POST", path, offer, headers, source=source, timeout=timeout)


def tally(statuses):
    out = {}
    for s in statuses:
        out[str(s)] = out.get(str(s), 0) + 1
    return out


def session_flood(server, kind, seconds):
    """Sequential POSTs with a valid offer and no token, then a token holder asks."""
    statuses, retry_after, deadline = [], set(), time.time() + seconds
    n = 0
    while time.time() < deadline:
        path = f"/whip/flood-{n}" if kind == "whip" else "/whep/live"
        try:
            status, headers, _ = post_offer(server, path, "127.0.0.2")
            statuses.append(status)
            if "retry-after" in {k.lower() for k in headers}:
                retry_after.add({k.lower(): v for k, v in headers.items()}["retry-after"])
        except OSError as e:
            statuses.append(type(e).__name__)
        n += 1
    paid = post_offer(server, "/whip/paid", "127.0.0.3", token="stream-key")[0]
    other = post_offer(server, "/whip/bystander", "127.0.0.4")[0]
    return {
        "requests": tally(statuses),
        "retry_after": sorted(retry_after),
        "token holder publishes": paid,
        "another client publishes": other,
    }


def whip_flood(server, seconds):
    return session_flood(server, "whip", seconds)


def whep_flood(server, seconds):
    # The live stream's name is chosen by the loadtest: find it.
    status, _, body = server.request("GET", "/api/streams")
    names = [s["name"] for s in json.loads(body)["streams"] if s["live"]] if status == 200 else []
    if names:
        name = names[0]
        statuses, deadline = [], time.time() + seconds
        while time.time() < deadline:
            try:
                statuses.append(post_offer(server, f"/whep/{name}", "127.0.0.2")[0])
            except OSError as e:
                statuses.append(type(e).__name__)
        return {"requests": tally(statuses)}
    return {"error": "no live stream found"}


def healthz_ms(server, source):
    start = time.time()
    try:
        status = server.request("GET", "/healthz", source=source, timeout=5)[0]
    except OSError as e:
        return f"{type(e).__name__} after {1000 * (time.time() - start):.0f} ms"
    return f"{status} in {1000 * (time.time() - start):.1f} ms"


def open_connections(server, sources, per_source, first=b""):
    socks, refused = [], 0
    for src in sources:
        for _ in range(per_source):
            try:
                s = socket.socket()
            except OSError:  # this process's own descriptor limit
                refused += 1
                continue
            try:
                s.bind((src, 0))
                s.connect(("127.0.0.1", server.port))
                if first:
                    s.send(first)
                socks.append(s)
            except OSError:
                refused += 1
                s.close()
    return socks, refused


def still_open(socks, wait):
    """How many of `socks` the server has neither answered nor closed after `wait` seconds."""
    time.sleep(wait)
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            s.recv(65536)  # an answer (408, 413) or the end of the stream
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


def slowloris(server, seconds):
    socks, refused = open_connections(
        server, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"], 100,
        first=b"POST /whip/x HTTP/1.1\r\nHost: x\r\nX-a: ",
    )
    during = healthz_ms(server, "127.0.0.9")
    alive = still_open(socks, min(seconds, 12))
    for s in socks:
        s.close()
    return {"opened": len(socks), "refused": refused, "open after 12 s": alive,
            "/healthz during": during}


def trickled_body(server, seconds):
    head = (b"POST /whip/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n"
            b"Content-Length: 60000\r\n\r\n")
    socks, refused = open_connections(server, ["127.0.0.2", "127.0.0.3"], 100, first=head)
    end = time.time() + min(seconds, 12)
    while time.time() < end:
        for s in socks:
            try:
                s.send(b"v")
            except OSError:
                pass
        time.sleep(1)
    alive = still_open(socks, 0)
    for s in socks:
        s.close()
    return {"opened": len(socks), "open after 12 s of trickle": alive}


def idle_flood(server, seconds):
    sources = [f"127.0.{1 + i // 250}.{2 + i % 250}" for i in range(200)]
    # 200 addresses x 100 (each within http.max_connections_per_client), up to what this
    # process may open.
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200
    socks, refused = open_connections(server, sources, min(100, limit // len(sources)))
    time.sleep(0.5)
    during = healthz_ms(server, "127.9.9.9")
    accepted = still_open(socks, 0.5)
    rss = server.rss()
    for s in socks:
        s.close()
    return {"connections tried": len(socks) + refused, "connect errors": refused,
            "held by the server": accepted, "/healthz from a new client": during,
            "RSS during (KiB)": rss}


def huge_content_length(server, seconds):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.settimeout(5)
    start = time.time()
    s.send(b"POST /whip/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n"
           b"Content-Length: 99999999999\r\n\r\n")
    try:
        line = s.recv(200).split(b"\r\n")[0].decode()
    except OSError as e:
        line = type(e).__name__
    s.close()
    return {"answer": line, "after ms": round(1000 * (time.time() - start), 1)}


def no_token_on_session(server, seconds):
    status, headers, _ = post_offer(server, "/whip/paid", "127.0.0.3", token="stream-key")
    location = {k.lower(): v for k, v in headers.items()}.get("location")
    if status != 201 or not location:
        return {"error": f"publisher refused: {status}"}
    frag = "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
    patch = server.request("PATCH", location, frag,
                           {"Content-Type": "application/trickle-ice-sdpfrag"}, "127.0.0.2")[0]
    restart = server.request("PATCH", location, frag,
                             {"Content-Type": "application/trickle-ice-sdpfrag",
                              "If-Match": "*"}, "127.0.0.2")[0]
    delete = server.request("DELETE", location, source="127.0.0.2")[0]
    delete_ok = server.request("DELETE", location, source="127.0.0.3",
                               headers={"Authorization": "Bearer stream-key"})[0]
    return {"trickle PATCH": patch, "ICE restart": restart, "DELETE": delete,
            "DELETE with the token": delete_ok}


def amplification(server, seconds):
    lines = OFFER.replace("\r\n", "\n").split("\n")
    first_m = next(i for i, l in enumerate(lines) if l.startswith("m="))
    head = "\r\n".join(lines[:first_m]) + "\r\n"
    # Short sections, so that the offer stays under http.max_body_bytes (64 KiB) as in the issue.
    audio = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:{}\r\na=sendonly\r\n"
    offer = head + "".join(audio.format(i) for i in range(617))
    before = server.rss()
    status, _, body = server.request("POST", "/whip/big", offer,
                                     {"Content-Type": "application/sdp"}, "127.0.0.2")
    return {"offer bytes": len(offer), "answer": status, "answer bytes": len(body),
            "reason": body.decode(errors="replace")[:80], "RSS grew (KiB)": server.rss() - before}


def admin_cors(server, seconds):
    out = {}
    for path in ["/api/stats", "/metrics", "/whip/x"]:
        method = "OPTIONS" if path.startswith("/whip") else "GET"
        headers = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        status, h, _ = server.request(method, path, headers=headers)
        h = {k.lower(): v for k, v in h.items()}
        out[f"{method} {path}"] = f"{status}, ACAO={h.get('access-control-allow-origin')}"
    return out


ATTACKS = {
    "whip-flood": whip_flood,
    "whep-flood": whep_flood,
    "slowloris-headers": slowloris,
    "slowloris-body": trickled_body,
    "idle-20000": idle_flood,
    "content-length-99999999999": huge_content_length,
    "patch-delete-without-token": no_token_on_session,
    "617-m-lines": amplification,
    "admin-cors": admin_cors,
}


def sigterm(binary, loadtest, seconds):
    """SIGTERM with two half-sent requests and a live stream: time to exit, exit status."""
    server = Server(binary)
    live = LiveStream(loadtest, server, 30)
    time.sleep(4)
    socks, _ = open_connections(server, ["127.0.0.2"], 2,
                                first=b"POST /whip/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    start = time.time()
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(30)
    took = time.time() - start
    live.proc.kill()
    for s in socks:
        s.close()
    server.log.close()
    server.dir.cleanup()
    return {"exit status": code, "seconds to exit": round(took, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=str(ROOT / "target/release/ringcast"))
    parser.add_argument("--loadtest", default=str(ROOT / "target/release/ringcast-loadtest"))
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--json")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = {}
    for name, attack in ATTACKS.items():
        if args.only and name not in args.only:
            continue
        server = Server(args.bin)
        live = LiveStream(args.loadtest, server, args.seconds + 4)
        time.sleep(3)
        rss_before = server.rss()
        try:
            got = attack(server, args.seconds)
        except Exception as e:  # the table says what broke, the next attack still runs
            got = {"error": repr(e)}
        loss = live.loss()
        time.sleep(1)
        got["live stream"] = loss
        got["RSS before/after (KiB)"] = f"{rss_before} / {server.rss()}"
        server.stop()
        results[name] = got
        print(f"{name}: {json.dumps(got)}", flush=True)
    if not args.only or "sigterm" in args.only:
        results["sigterm"] = sigterm(args.bin, args.loadtest, args.seconds)
        print(f"sigterm: {json.dumps(results['sigterm'])}", flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
