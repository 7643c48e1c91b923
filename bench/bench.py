#!/usr/bin/env python3
"""Benchmarks of the gateway's request path, side by side with nginx, on this machine.

Started by bench/run.sh (which builds the release binary and installs nginx and wrk). Every
server binds 127.0.0.1 on a free port; every load run is bounded in time. Prints a markdown
table of the throughput runs, then the memory, refresh-storm, provider-callback and start-up
measurements. The flows of the callback measurement are bounded by a deadline (30 s to prepare)
and a count (CALLBACKS, default 3000), each request by a 10 s timeout.

A last part (alone with ONLY=shared_state) runs the gateway with its state in Redis (a redis-server started here): the proxied
request in Redis mode against memory mode, the delay until a sign-out on one replica is
honoured by another, provider callbacks per second in Redis mode, and the Redis memory per
session (MEMORY USAGE of its keys) beyond the tokens.

Scenarios (wrk, 64 connections, RUN_SECS per run, ROUNDS rounds interleaved):
  direct            the static backend (nginx) itself
  nginx proxy       nginx proxy_pass with a keepalive upstream -> backend
  gateway proxy     the gateway: session check, bearer and identity headers -> backend
  nginx+gw auth     nginx auth_request -> gateway /__auth/auth, then proxy_pass -> backend
  nginx+static auth nginx auth_request -> a static nginx answering 202, then -> backend
  gw /__auth/auth   the gateway's forward-auth endpoint alone
  static 202        an nginx answering 202 with the same headers (the stand-in)
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("GATEWAY_BIN", os.path.join(ROOT, "target", "release", "cloudbase-gateway"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
RUN_SECS = int(os.environ.get("RUN_SECS", "10"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "64"))
SESSIONS = [int(n) for n in os.environ.get("SESSIONS", "10000,100000").split(",") if n]
TICK = os.sysconf("SC_CLK_TCK")
WORK = tempfile.mkdtemp(prefix="cbgw-bench-")
# nginx workers run as an unprivileged user when started as root: they must read the site.
os.chmod(WORK, 0o755)
PROCS = []


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cleanup(*_):
    for p in PROCS:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except Exception:
            pass
    shutil.rmtree(WORK, ignore_errors=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def spawn(cmd, name, env=None):
    out = open(os.path.join(WORK, f"{name}.log"), "wb")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=out, env=env, start_new_session=True)
    PROCS.append(p)
    return p


def first_line(p, timeout=10):
    """The first stdout line of p (the stable `listening on ...` line)."""
    result = {}

    def read():
        result["line"] = p.stdout.readline().decode().strip()

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    if "line" not in result:
        raise RuntimeError("no output from a started process")
    return result["line"]


def wait_http(url, timeout=10, expect=(200,)):
    deadline = time.time() + timeout
    u = urllib.parse.urlsplit(url)
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=1)
            c.request("GET", u.path or "/")
            r = c.getresponse()
            r.read()
            if r.status in expect:
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url} did not answer")


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def cpu_secs(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICK


def rss_mb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Nginx:
    """One nginx instance with its own prefix, config and workers."""

    def __init__(self, name, server_block, workers="auto"):
        self.dir = os.path.join(WORK, name)
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        conf = f"""
daemon off;
master_process on;
worker_processes {workers};
pid {self.dir}/nginx.pid;
error_log {self.dir}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    keepalive_requests 1000000;
    {server_block}
}}
"""
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(conf)
        self.proc = spawn(["nginx", "-p", self.dir, "-c", os.path.join(self.dir, "nginx.conf"),
                           "-e", os.path.join(self.dir, "logs", "error.log")], name)

    def pids(self):
        return [self.proc.pid] + children(self.proc.pid)


def wrk(url, headers=()):
    script = os.path.join(WORK, "report.lua")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write("""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKJSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"errors\\":%d,\\"status\\":%d,\\"p50\\":%d,\\"p99\\":%d}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
""")
    cmd = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{RUN_SECS}s", "--latency", "-s", script]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_SECS + 30).stdout
    m = re.search(r"WRKJSON (\{.*\})", out)
    if not m:
        raise RuntimeError(f"wrk gave no result:\n{out}")
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def sign_in(gw, user, password):
    """Password sign-in through the login page; the session cookie."""
    u = urllib.parse.urlsplit(gw)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    c.request("GET", "/__auth/", headers={"Accept": "text/html"})
    r = c.getresponse()
    html = r.read().decode()
    csrf_cookie = [v for k, v in r.getheaders() if k.lower() == "set-cookie" and "_csrf=" in v][0]
    csrf_cookie = csrf_cookie.split(";")[0]
    token = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    body = urllib.parse.urlencode({"csrf": token, "username": user, "password": password, "rd": "/"})
    c.request("POST", "/__auth/sign_in/password", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": csrf_cookie, "Accept": "text/html"})
    r = c.getresponse()
    r.read()
    session = [v for k, v in r.getheaders() if k.lower() == "set-cookie" and v.startswith("cbgw_session=")]
    if r.status != 302 or not session:
        raise RuntimeError(f"sign-in failed: {r.status}")
    return session[0].split(";")[0]


def start_emulator(extra=()):
    users = os.path.join(WORK, "users.toml")
    with open(users, "w") as f:
        f.write('[[users]]\nusername = "bench"\nemail = "bench@example.com"\npassword = "bench-password-1"\n'
                'name = "Bench"\ngroups = ["staff"]\n')
    p = spawn([BIN, "emulator", "--listen", "127.0.0.1:0", "--env", "bench-env", "--users", users, *extra],
              "emulator")
    url = first_line(p).split()[-1]
    return p, url


def start_gateway(emulator, backend, extra="", name="gateway"):
    port = free_port()
    conf = os.path.join(WORK, f"{name}.toml")
    with open(conf, "w") as f:
        f.write(f"""listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
env_id = "bench-env"
api_origin = "{emulator}"
upstream = "{backend}"
insecure_cookie = true
cookie_secret = "bench-cookie-secret-0123456789abcdef"
trusted_proxies = ["127.0.0.1"]
log_level = "warn"
{extra}
""")
    t0 = time.perf_counter()
    p = spawn([BIN, "serve", "--config", conf], name)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/ready", timeout=10)
    ready_ms = (time.perf_counter() - t0) * 1000
    return p, url, ready_ms


def main():
    signal.signal(signal.SIGTERM, cleanup)
    try:
        run()
    finally:
        cleanup()


def run():
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} is missing: run bench/run.sh (it builds the release binary)")
    # The static backend: one small HTML file, one worker (it is not what is measured).
    site = os.path.join(WORK, "site")
    os.makedirs(site)
    with open(os.path.join(site, "index.html"), "w") as f:
        f.write("<!doctype html><title>backend</title><p>" + "hello backend " * 40 + "</p>\n")
    b_port = free_port()
    backend = Nginx("backend", f"server {{ listen 127.0.0.1:{b_port}; location / {{ root {site}; }} }}", workers=1)
    backend_url = f"http://127.0.0.1:{b_port}"
    wait_http(backend_url + "/")

    emu, emu_url = start_emulator()
    if os.environ.get("ONLY") == "shared_state":
        shared_state(emu_url, backend_url)
        return
    gw, gw_url, _ = start_gateway(emu_url, backend_url)
    gw_port = urllib.parse.urlsplit(gw_url).port
    cookie = sign_in(gw_url, "bench", "bench-password-1")
    cookie_h = f"Cookie: {cookie}"

    # What the gateway's forward-auth answers, for the static stand-in to answer the same.
    c = http.client.HTTPConnection("127.0.0.1", gw_port)
    c.request("GET", "/__auth/auth", headers={"Cookie": cookie, "X-Forwarded-Uri": "/"})
    r = c.getresponse()
    r.read()
    assert r.status == 202, r.status
    auth_headers = [(k, v) for k, v in r.getheaders()
                    if k.lower().startswith("x-auth-request-") or k.lower() == "authorization"]
    add = "\n".join(f'add_header {k} "{v}" always;' for k, v in auth_headers)

    s_port = free_port()
    static202 = Nginx("static202", f"""server {{ listen 127.0.0.1:{s_port};
        location / {{ {add} return 202; }} }}""")
    upstreams = f"""
    upstream backend {{ server 127.0.0.1:{b_port}; keepalive 128; }}
    upstream gw {{ server 127.0.0.1:{gw_port}; keepalive 128; }}
    upstream static202 {{ server 127.0.0.1:{s_port}; keepalive 128; }}
"""
    p_port = free_port()
    nginx_proxy = Nginx("proxy", upstreams + f"""server {{ listen 127.0.0.1:{p_port};
        location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")

    def auth_front(name, target):
        port = free_port()
        inst = Nginx(name, upstreams + f"""server {{ listen 127.0.0.1:{port};
        location = /__auth/auth {{ internal; proxy_pass http://{target}; proxy_pass_request_body off;
            proxy_set_header Content-Length ""; proxy_set_header X-Forwarded-Uri $request_uri;
            proxy_set_header X-Forwarded-Host $host; proxy_http_version 1.1; proxy_set_header Connection ""; }}
        location / {{ auth_request /__auth/auth;
            auth_request_set $user $upstream_http_x_auth_request_user;
            auth_request_set $auth $upstream_http_authorization;
            proxy_set_header X-Forwarded-User $user; proxy_set_header Authorization $auth;
            proxy_set_header Cookie "";
            proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")
        return inst, f"http://127.0.0.1:{port}"

    auth_gw, auth_gw_url = auth_front("authgw", "gw")
    auth_static, auth_static_url = auth_front("authstatic", "static202")
    for u in [f"http://127.0.0.1:{p_port}/", f"http://127.0.0.1:{s_port}/"]:
        wait_http(u, expect=(200, 202))
    wait_http(auth_static_url + "/")

    gw_pids = lambda: [gw.pid]
    scenarios = [
        ("direct", backend_url + "/", [], backend.pids),
        ("nginx proxy_pass", f"http://127.0.0.1:{p_port}/", [], nginx_proxy.pids),
        ("gateway proxy", gw_url + "/", [cookie_h], gw_pids),
        ("nginx auth_request → gateway", auth_gw_url + "/", [cookie_h], lambda: auth_gw.pids() + [gw.pid]),
        ("nginx auth_request → static 202", auth_static_url + "/", [cookie_h],
         lambda: auth_static.pids() + static202.pids()),
        ("gateway /__auth/auth alone", gw_url + "/__auth/auth", [cookie_h, "X-Forwarded-Uri: /"], gw_pids),
        ("static nginx 202 alone", f"http://127.0.0.1:{s_port}/__auth/auth", [cookie_h], static202.pids),
    ]
    results = {name: [] for name, *_ in scenarios}
    log(f"{ROUNDS} rounds × {len(scenarios)} scenarios × {RUN_SECS} s, {CONNECTIONS} connections")
    for rnd in range(ROUNDS):
        for name, url, headers, pids in scenarios:
            before = cpu_secs(pids())
            r = wrk(url, headers)
            r["cpu_us"] = (cpu_secs(pids()) - before) * 1e6 / max(r["requests"], 1)
            r["rss"] = rss_mb(pids())
            results[name].append(r)
            log(f"  round {rnd + 1} {name}: {r['rps']:.0f} req/s, p99 {r['p99'] / 1000:.2f} ms, "
                f"errors {r['errors'] + r['status']}")

    def med(name, key):
        return statistics.median(x[key] for x in results[name])

    direct = med("direct", "rps")
    plain = med("nginx proxy_pass", "rps")
    print("## Throughput and latency\n")
    print(f"wrk -t2 -c{CONNECTIONS} -d{RUN_SECS}s, {ROUNDS} rounds interleaved; medians (min–max). "
          "CPU is the measured component's processes (user + system) per request; for the "
          "auth_request rows, nginx and the auth server together.\n")
    print("| scenario | req/s median (min–max) | p50 ms | p99 ms | × direct | × nginx proxy | CPU µs/req | RSS MB | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, *_ in scenarios:
        rs = [x["rps"] for x in results[name]]
        errors = sum(x["errors"] + x["status"] for x in results[name])
        print(f"| {name} | {statistics.median(rs):,.0f} ({min(rs):,.0f}–{max(rs):,.0f}) "
              f"| {med(name, 'p50') / 1000:.2f} | {med(name, 'p99') / 1000:.2f} "
              f"| {statistics.median(rs) / direct:.2f} | {statistics.median(rs) / plain:.2f} "
              f"| {med(name, 'cpu_us'):.1f} | {max(x['rss'] for x in results[name]):.1f} | {errors} |")

    g, n = "gateway proxy", "nginx proxy_pass"
    fa, st = "gateway /__auth/auth alone", "static nginx 202 alone"
    ag, ast = "nginx auth_request → gateway", "nginx auth_request → static 202"
    print("\n## Targets\n")
    print("| target | measured | met |")
    print("| --- | --- | --- |")
    checks = [
        ("gateway proxy ≥ 1.0× nginx proxy_pass", med(g, "rps") / med(n, "rps"), 1.0, True),
        ("gateway proxy p99 ≤ nginx's (ratio)", med(g, "p99") / med(n, "p99"), 1.0, False),
        ("gateway CPU/req ≤ nginx's (ratio)", med(g, "cpu_us") / med(n, "cpu_us"), 1.0, False),
        ("/__auth/auth ≥ 0.8× static nginx 202", med(fa, "rps") / med(st, "rps"), 0.8, True),
        ("auth_request → gateway ≥ 0.9× → static", med(ag, "rps") / med(ast, "rps"), 0.9, True),
    ]
    for label, value, bound, at_least in checks:
        ok = value >= bound if at_least else value <= bound
        print(f"| {label} | {value:.2f} | {'yes' if ok else 'NO'} |")

    for p in [auth_gw.proc, auth_static.proc, static202.proc, nginx_proxy.proc, gw]:
        os.killpg(p.pid, signal.SIGKILL)

    memory(emu_url, backend_url)
    refresh_storm(backend_url)
    provider_callbacks(backend_url)
    startup(emu_url, backend_url)
    shared_state(emu_url, backend_url)


def memory(emu_url, backend_url):
    """RSS per session: guests signed in automatically on an anonymous_auto_sign_in route."""
    print("\n## Memory\n")
    gw, url, _ = start_gateway(emu_url, backend_url, extra=f"""
rate_limit_anonymous_per_ip = "off"
session_capacity = {max(SESSIONS) + 1000}
[[routes]]
path = "/"
upstream = "{backend_url}"
anonymous_auto_sign_in = true
""", name="gateway-mem")
    time.sleep(0.5)
    idle = rss_mb([gw.pid])
    # One token pair as the emulator issues it, to tell the session's own overhead apart.
    u = urllib.parse.urlsplit(emu_url)
    c = http.client.HTTPConnection(u.hostname, u.port)
    c.request("POST", "/auth/v1/signin/anonymously?client_id=bench-env", body="{}",
              headers={"x-device-id": "0123456789abcdef0123456789abcdef"})
    t = json.loads(c.getresponse().read())
    token_bytes = len(t["access_token"]) + len(t["refresh_token"])
    print(f"Idle RSS after start: {idle:.1f} MB. Tokens per session: {token_bytes} bytes "
          f"(access {len(t['access_token'])}, refresh {len(t['refresh_token'])}).\n")
    print("| active sessions | gateway RSS MB | bytes per session | beyond the tokens |")
    print("| --- | --- | --- | --- |")
    made = 0
    base = rss_mb([gw.pid])
    gu = urllib.parse.urlsplit(url)
    for target in sorted(SESSIONS):
        need = target - made
        lock = threading.Lock()
        counter = {"left": need, "ok": 0}

        def worker():
            conn = http.client.HTTPConnection(gu.hostname, gu.port, timeout=30)
            while True:
                with lock:
                    if counter["left"] <= 0:
                        return
                    counter["left"] -= 1
                conn.request("GET", "/", headers={"Sec-Fetch-Mode": "navigate", "Accept": "text/html"})
                r = conn.getresponse()
                r.read()
                if any(k.lower() == "set-cookie" and v.startswith("cbgw_session=") for k, v in r.getheaders()):
                    with lock:
                        counter["ok"] += 1

        threads = [threading.Thread(target=worker) for _ in range(8)]
        t0 = time.time()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        made += counter["ok"]
        time.sleep(1)
        rss = rss_mb([gw.pid])
        per = (rss - base) * 1024 * 1024 / made
        log(f"  {made} sessions in {time.time() - t0:.0f} s")
        print(f"| {made:,} | {rss:.1f} | {per:,.0f} | {per - token_bytes:,.0f} |")
    os.killpg(gw.pid, signal.SIGKILL)


def refresh_storm(backend_url):
    """1 000 concurrent requests on a session whose access token is due for refresh."""
    print("\n## Refresh storm\n")
    emu, emu_url = start_emulator(["--access-token-ttl", "3605"])
    gw, url, _ = start_gateway(emu_url, backend_url, extra='refresh_margin = "1h"', name="gateway-storm")
    cookie = sign_in(url, "bench", "bench-password-1")
    # The token is due once less than an hour is left: 6 s after the sign-in.
    time.sleep(6.5)
    u = urllib.parse.urlsplit(emu_url)
    c = http.client.HTTPConnection(u.hostname, u.port)
    c.request("DELETE", "/__emulator/requests")
    c.getresponse().read()
    gu = urllib.parse.urlsplit(url)
    socks = []
    for _ in range(1000):
        s = socket.create_connection((gu.hostname, gu.port))
        socks.append(s)
    req = f"GET / HTTP/1.1\r\nHost: {gu.netloc}\r\nCookie: {cookie}\r\nAccept: application/json\r\nConnection: close\r\n\r\n".encode()
    t0 = time.time()
    for s in socks:
        s.sendall(req)
    statuses = {}
    for s in socks:
        s.settimeout(30)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        code = data.split(b" ", 2)[1].decode() if data else "none"
        statuses[code] = statuses.get(code, 0) + 1
        s.close()
    elapsed = time.time() - t0
    c.request("GET", "/__emulator/requests")
    reqs = json.loads(c.getresponse().read())
    refreshes = sum(1 for r in reqs if r["path"] == "/auth/v1/token")
    print(f"1,000 concurrent requests through the gateway to the backend in {elapsed:.2f} s: "
          f"statuses {statuses}; "
          f"CloudBase refresh calls: **{refreshes}** (target: 1).")
    os.killpg(gw.pid, signal.SIGKILL)
    os.killpg(emu.pid, signal.SIGKILL)


def header(r, name):
    return [v for k, v in r.getheaders() if k.lower() == name]


def provider_callbacks(backend_url, extra="", label=""):
    """Requests/s of the provider callback: state check and spend, provider/token and
    signin/with/provider at the emulator, the session, the 302. The flows are prepared first
    (start → the emulator's consent → a code), then only the callbacks are timed. A fresh
    emulator: the one the memory run filled with 100,000 guests looks users up slowly."""
    if not label:
        print("\n## Provider sign-in callback\n")
    emu, emu_url = start_emulator()
    emu_pid = emu.pid
    # Every flow starts from this one address: the per-client limit of starts is off here.
    gw, url, _ = start_gateway(emu_url, backend_url,
                               extra='providers = ["github"]\nrate_limit_start_per_ip = "off"\n' + extra,
                               name="gateway-provider" + label.replace(" ", "-"))
    gu = urllib.parse.urlsplit(url)
    eu = urllib.parse.urlsplit(emu_url)
    lock = threading.Lock()
    prepared = []
    deadline = time.time() + 30

    def prepare(n):
        """One browser (CSRF cookie) preparing n flows up to their callback URL."""
        g = http.client.HTTPConnection(gu.hostname, gu.port, timeout=10)
        e = http.client.HTTPConnection(eu.hostname, eu.port, timeout=10)
        nav = {"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}
        cookie = None
        for _ in range(n):
            if time.time() > deadline:
                return
            g.request("GET", "/__auth/start?provider=github&rd=%2Fapp", headers=dict(nav, **({"Cookie": cookie} if cookie else {})))
            r = g.getresponse()
            r.read()
            if cookie is None:
                cookie = header(r, "set-cookie")[0].split(";")[0]
            consent = urllib.parse.urlsplit(header(r, "location")[0])
            q = dict(urllib.parse.parse_qsl(consent.query))
            form = urllib.parse.urlencode({"provider_id": q["provider_id"], "redirect_uri": q["redirect_uri"],
                                           "state": q["state"], "login": "bench-github", "decision": "approve"})
            e.request("POST", consent.path, body=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
            r = e.getresponse()
            r.read()
            back = urllib.parse.urlsplit(header(r, "location")[0])
            with lock:
                prepared.append((back.path + "?" + back.query, cookie))

    count = int(os.environ.get("CALLBACKS", "3000"))
    threads = [threading.Thread(target=prepare, args=(count // 8,)) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    todo = list(prepared)
    latencies, statuses = [], {}

    def fire():
        g = http.client.HTTPConnection(gu.hostname, gu.port, timeout=10)
        while True:
            with lock:
                if not todo:
                    return
                path, cookie = todo.pop()
            t0 = time.perf_counter()
            g.request("GET", path, headers={"Cookie": cookie, "Sec-Fetch-Mode": "navigate", "Accept": "text/html"})
            r = g.getresponse()
            r.read()
            ms = (time.perf_counter() - t0) * 1000
            signed_in = r.status == 302 and any(v.startswith("cbgw_session=") for v in header(r, "set-cookie"))
            with lock:
                latencies.append(ms)
                key = "signed in" if signed_in else str(r.status)
                statuses[key] = statuses.get(key, 0) + 1

    pids = [gw.pid]
    before_gw, before_emu = cpu_secs(pids), cpu_secs([emu_pid])
    t0 = time.perf_counter()
    threads = [threading.Thread(target=fire) for _ in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    gw_cpu = (cpu_secs(pids) - before_gw) * 1e6 / max(len(latencies), 1)
    emu_cpu = (cpu_secs([emu_pid]) - before_emu) * 1e6 / max(len(latencies), 1)
    latencies.sort()
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    print(f"{label}{len(latencies):,} callbacks prepared beforehand (start → consent → code), then sent by 16 "
          f"keep-alive Python clients: **{len(latencies) / elapsed:,.0f} callbacks/s**, p50 {pct(0.5):.2f} ms, "
          f"p99 {pct(0.99):.2f} ms; results {statuses}. CPU per callback: gateway {gw_cpu:.0f} µs, "
          f"emulator {emu_cpu:.0f} µs (it signs an RS256 access token for each).")
    os.killpg(gw.pid, signal.SIGKILL)
    os.killpg(emu.pid, signal.SIGKILL)
    return len(latencies) / elapsed


def start_redis():
    port = free_port()
    p = spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", WORK, "--logfile", os.path.join(WORK, "redis.log")], "redis")
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            out = subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True, text=True).stdout
            if "PONG" in out:
                return p, port
        except Exception:
            pass
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True).stdout


def sign_out(gw, cookie):
    """The sign-out form: GET for the CSRF token, then POST."""
    u = urllib.parse.urlsplit(gw)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    c.request("GET", "/__auth/sign_out", headers={"Accept": "text/html", "Cookie": cookie})
    r = c.getresponse()
    html = r.read().decode()
    csrf_cookie = [v for k, v in r.getheaders() if k.lower() == "set-cookie" and "_csrf=" in v][0].split(";")[0]
    token = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    c.request("POST", "/__auth/sign_out", body=urllib.parse.urlencode({"csrf": token, "rd": "/"}),
              headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html",
                       "Cookie": f"{cookie}; {csrf_cookie}"})
    r = c.getresponse()
    r.read()
    if r.status != 302:
        raise RuntimeError(f"sign-out failed: {r.status}")


def shared_state(emu_url, backend_url):
    """The gateway with its state in Redis, against memory mode."""
    print("\n## Shared state in Redis\n")
    redis, port = start_redis()
    store = f'session_store_type = "redis"\nredis_connection_url = "redis://127.0.0.1:{port}/0"\n'
    mem, mem_url, _ = start_gateway(emu_url, backend_url, name="gateway-memory")
    red, red_url, _ = start_gateway(emu_url, backend_url, extra=store, name="gateway-redis")
    red_b, red_b_url, _ = start_gateway(emu_url, backend_url, extra=store, name="gateway-redis-b")
    mem_cookie = sign_in(mem_url, "bench", "bench-password-1")
    red_cookie = sign_in(red_url, "bench", "bench-password-1")
    runs = {"memory": [], "redis": []}
    for rnd in range(ROUNDS):
        for name, url, cookie, pid in [("memory", mem_url, mem_cookie, mem.pid), ("redis", red_url, red_cookie, red.pid)]:
            pids = [pid] + ([redis.pid] if name == "redis" else [])
            before = cpu_secs(pids)
            r = wrk(url + "/", [f"Cookie: {cookie}"])
            r["cpu_us"] = (cpu_secs(pids) - before) * 1e6 / max(r["requests"], 1)
            runs[name].append(r)
            log(f"  round {rnd + 1} gateway proxy, session in {name}: {r['rps']:.0f} req/s, "
                f"p99 {r['p99'] / 1000:.2f} ms, errors {r['errors'] + r['status']}")
    med = lambda name, key: statistics.median(x[key] for x in runs[name])
    print(f"wrk -t2 -c{CONNECTIONS} -d{RUN_SECS}s, {ROUNDS} rounds interleaved, the proxied request with a "
          "session check and bearer injection; CPU counts the gateway and, in Redis mode, redis-server.\n")
    print("| session store | req/s median (min–max) | p50 ms | p99 ms | CPU µs/req | errors |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in ["memory", "redis"]:
        rs = [x["rps"] for x in runs[name]]
        errors = sum(x["errors"] + x["status"] for x in runs[name])
        print(f"| {name} | {statistics.median(rs):,.0f} ({min(rs):,.0f}–{max(rs):,.0f}) | {med(name, 'p50') / 1000:.2f} "
              f"| {med(name, 'p99') / 1000:.2f} | {med(name, 'cpu_us'):.1f} | {errors} |")
    ratio = med("redis", "rps") / med("memory", "rps")

    # A sign-out on replica A, then requests on replica B until it refuses the cookie.
    cookie = sign_in(red_url, "bench", "bench-password-1")
    bu = urllib.parse.urlsplit(red_b_url)
    b = http.client.HTTPConnection(bu.hostname, bu.port, timeout=10)

    def status_on_b():
        b.request("GET", "/", headers={"Cookie": cookie, "Accept": "application/json"})
        r = b.getresponse()
        r.read()
        return r.status

    assert status_on_b() == 200
    t0 = time.perf_counter()
    sign_out(red_url, cookie)
    signed_out = time.perf_counter()
    polls = 0
    while status_on_b() != 401 and polls < 10000:
        polls += 1
    honoured_ms = (time.perf_counter() - signed_out) * 1000
    log(f"  sign-out took {(signed_out - t0) * 1000:.1f} ms; B refused after {polls} more requests")

    # Redis memory per session: guests on an anonymous_auto_sign_in route, then MEMORY USAGE.
    guests, g_url, _ = start_gateway(emu_url, backend_url, extra=store + f"""rate_limit_anonymous_per_ip = "off"
[[routes]]
path = "/"
upstream = "{backend_url}"
anonymous_auto_sign_in = true
""", name="gateway-redis-guests")
    gu = urllib.parse.urlsplit(g_url)
    g = http.client.HTTPConnection(gu.hostname, gu.port, timeout=10)
    made = 0
    for _ in range(500):
        g.request("GET", "/", headers={"Sec-Fetch-Mode": "navigate", "Accept": "text/html"})
        r = g.getresponse()
        r.read()
        made += any(k.lower() == "set-cookie" and v.startswith("cbgw_session=") for k, v in r.getheaders())
    eu = urllib.parse.urlsplit(emu_url)
    c = http.client.HTTPConnection(eu.hostname, eu.port)
    c.request("POST", "/auth/v1/signin/anonymously?client_id=bench-env", body="{}",
              headers={"x-device-id": "0123456789abcdef0123456789abcdef"})
    t = json.loads(c.getresponse().read())
    token_bytes = len(t["access_token"]) + len(t["refresh_token"])
    records = [k for k in redis_cli(port, "--scan", "--pattern", "cbgw:{*}:s").split() if k]
    indexes = [k for k in redis_cli(port, "--scan", "--pattern", "cbgw:u:*").split() if k]
    usage = lambda keys: sum(int(redis_cli(port, "MEMORY", "USAGE", k).strip() or 0) for k in keys)
    rec_bytes = usage(records) / max(len(records), 1)
    idx_bytes = usage(indexes) / max(len(records), 1)
    os.killpg(guests.pid, signal.SIGKILL)
    for p in [mem, red, red_b]:
        os.killpg(p.pid, signal.SIGKILL)

    print(f"\nA sign-out on replica A is honoured by replica B on B's next request: "
          f"**{honoured_ms:.1f} ms** after A answered ({polls} requests on B in between: B's near cache "
          "dropped its copy when A's invalidation arrived; at the latest it would after 500 ms).\n")
    print(f"Redis memory per session ({len(records)} guest sessions from {made} navigations): record "
          f"{rec_bytes:,.0f} B + user index {idx_bytes:,.0f} B = {rec_bytes + idx_bytes:,.0f} B; tokens "
          f"{token_bytes} B (sealed, with the JSON around them); **{rec_bytes + idx_bytes - token_bytes:,.0f} B "
          "beyond the tokens** (target ≤ 1 KiB).\n")
    cps_mem = provider_callbacks(backend_url, label="Memory mode: ")
    print()
    cps_red = provider_callbacks(backend_url, extra=store, label="Redis mode: ")
    print("\n| target | measured | met |")
    print("| --- | --- | --- |")
    print(f"| proxied request, Redis ≥ 0.9× memory | {ratio:.2f} | {'yes' if ratio >= 0.9 else 'NO'} |")
    print(f"| Redis memory per session beyond the tokens ≤ 1 KiB | {rec_bytes + idx_bytes - token_bytes:,.0f} B "
          f"| {'yes' if rec_bytes + idx_bytes - token_bytes <= 1024 else 'NO'} |")
    print(f"| provider callbacks, Redis vs memory | {cps_red:,.0f} vs {cps_mem:,.0f}/s ({cps_red / max(cps_mem, 1):.2f}×) | — |")
    print(f"| sign-out honoured by another replica within 1 s | {honoured_ms:.1f} ms | {'yes' if honoured_ms <= 1000 else 'NO'} |")
    os.killpg(redis.pid, signal.SIGKILL)


def startup(emu_url, backend_url):
    print("\n## Start-up and idle memory\n")
    times, rss = [], []
    for i in range(5):
        gw, _, ms = start_gateway(emu_url, backend_url, name=f"gateway-start{i}")
        times.append(ms)
        time.sleep(0.5)
        rss.append(rss_mb([gw.pid]))
        os.killpg(gw.pid, signal.SIGKILL)
    print(f"`serve` from spawn to the first 200 from `/ready`, 5 runs: median {statistics.median(times):.1f} ms "
          f"(min {min(times):.1f}, max {max(times):.1f}); idle RSS {statistics.median(rss):.1f} MB "
          f"(targets: ≤ 100 ms, ≤ 30 MB).")


if __name__ == "__main__":
    main()
