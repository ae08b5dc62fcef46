#!/usr/bin/env python3
"""portcullis benchmark driver (run through `bash bench/run`, which builds first).

Starts the release server on a fresh SQLite database with the demo user, loads it on loopback
with wrk, runs the Argon2 ceiling example, measures start-to-ready on an existing database and
prints one table. Raw wrk output and per-phase notes go to bench/results/<timestamp>/.
Exit status: 0 whether or not targets are met; 1 if the harness itself failed.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SERVER = ROOT / "target" / "release" / "portcullis"
ARGON2_LIMIT = ROOT / "target" / "release" / "examples" / "argon2_limit"
LOOKUP_LIMIT = ROOT / "target" / "release" / "examples" / "lookup_limit"
REPORT_LUA = BENCH / "lua" / "report.lua"
TOKEN_LUA = BENCH / "lua" / "token.lua"

ROUNDS = 3  # every load runs this many times; the table shows medians
DURATION = "10s"
CONNS = 64
ME_CONNS_UNDER_LOGINS = 16
FLOOD_CONNS = 1000
STARTS = 5
# Far above any latency we expect: wrk drops latencies beyond --timeout from its histogram
# (counting them as timeouts), which would truncate the login p99.
WRK_TIMEOUT = "60s"


class HarnessError(Exception):
    pass


# ---------------------------------------------------------------- server process


class Server:
    """`portcullis serve` in its own working directory."""

    def __init__(self, workdir, demo=True, bind="127.0.0.1:0", database_url=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [str(SERVER), "serve", "--bind", bind]
        if demo:
            args.append("--demo")
        self.stderr = open(self.workdir / "server.log", "ab")
        self.proc = subprocess.Popen(
            args,
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=server_env(database_url),
        )
        self.pid = self.proc.pid
        self.base = None

    def wait_listening(self, timeout=30):
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline().decode()
        if time.monotonic() > deadline or "listening on http://" not in line:
            self.stop()
            raise HarnessError(f"server did not start: first line {line!r}; see {self.workdir}/server.log")
        self.base = line.strip().split("listening on ", 1)[1]
        host_port = self.base.removeprefix("http://")
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        # Keep draining stdout so the server never blocks on it.
        subprocess.Popen(["cat"], stdin=self.proc.stdout, stdout=subprocess.DEVNULL)
        return self

    def status(self, key):
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
        raise HarnessError(f"{key} not in /proc/{self.pid}/status")

    def hwm_kib(self):
        return int(self.status("VmHWM").split()[0])

    def rss_kib(self):
        return int(self.status("VmRSS").split()[0])

    def reset_hwm(self):
        """Resets VmHWM to the current RSS (proc(5): clear_refs 5), to find one phase's peak."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def cpu_ticks(self):
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def wait_quiet(self, timeout=90):
        """Waits until the server is idle: queued password hashes outlive the client that asked."""
        deadline = time.monotonic() + timeout
        ticks_per_s = os.sysconf("SC_CLK_TCK")
        calm = 0
        last = self.cpu_ticks()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = self.cpu_ticks()
            busy = (now - last) / ticks_per_s / 0.25  # cores in use
            last = now
            calm = calm + 1 if busy < 0.05 else 0
            if calm >= 2:
                return
        raise HarnessError("the server stayed busy for 90 s after a load")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def server_env(database_url=None):
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("PORTCULLIS_") or key == "DATABASE_URL":
            del env[key]
    if database_url:
        env["DATABASE_URL"] = database_url
    # The login figures measure hashing capacity with one account from one address: exactly
    # what the per-account and per-client limits exist to stop. Lifted here (the throttle's
    # statements still run on every login), so that the figures stay comparable.
    env.update({
        "PORTCULLIS_LOGIN_MAX_FAILURES": "1000000",
        "PORTCULLIS_LOGIN_MAX_FAILURES_PER_ADDRESS": "1000000",
        "PORTCULLIS_LOGIN_MAX_SUCCESSES_PER_ACCOUNT_PER_MINUTE": "1000000",
        "PORTCULLIS_HASH_QUEUE_PER_CLIENT": "100000",
    })
    # wrk is one client address standing for many clients (up to 1,000 connections in the
    # flood): the per-address connection cap (64 by default) would refuse most of them.
    env["PORTCULLIS_MAX_CONNECTIONS_PER_ADDRESS"] = "4096"
    return env


def request(host, port, method, path, body=None, headers=None, timeout=10):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def login(server):
    status, body = request(
        server.host, server.port, "POST", "/token",
        body="username=johndoe&password=secret",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    if status != 200:
        raise HarnessError(f"POST /token answered {status}: {body[:200]!r}")
    return json.loads(body)["access_token"]


def api_key(server, token):
    """A personal API key of the demo user, made with `token`: the credential scripts use."""
    status, body = request(
        server.host, server.port, "POST", "/users/me/api-keys",
        body=json.dumps({"name": "bench"}),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    if status != 201:
        raise HarnessError(f"POST /users/me/api-keys answered {status}: {body[:200]!r}")
    return json.loads(body)["key"]


# ---------------------------------------------------------------- wrk


class Wrk:
    def __init__(self, results, name, url, script, threads=2, conns=CONNS, duration=DURATION, headers=()):
        self.name = name
        self.out_path = results / f"{name}.txt"
        args = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}", f"--timeout={WRK_TIMEOUT}",
                "--latency", "-s", str(script)]
        for h in headers:
            args += ["-H", h]
        args.append(url)
        self.args = args
        self.out = open(self.out_path, "w")
        self.out.write("$ " + " ".join(a if "Bearer" not in a else "-H 'Authorization: Bearer …'" for a in args) + "\n")
        self.out.flush()
        self.proc = subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT)

    def result(self):
        code = self.proc.wait()
        self.out.close()
        text = self.out_path.read_text()
        if code != 0:
            raise HarnessError(f"wrk failed ({code}) for {self.name}: {text[-500:]}")
        for line in text.splitlines():
            if line.startswith("BENCH_JSON "):
                r = json.loads(line.removeprefix("BENCH_JSON "))
                r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
                r["non2xx"] = (
                    sum(n for s, n in r["statuses"].items() if not 200 <= int(s) < 300)
                    if r["statuses"] else r["status_errors"]
                )
                ok = sum(n for s, n in r["statuses"].items() if 200 <= int(s) < 300)
                r["ok_rps"] = ok / (r["duration_us"] / 1e6) if r["statuses"] else r["rps"]
                r["socket_errors"] = r["connect_errors"] + r["read_errors"] + r["write_errors"]
                return r
        raise HarnessError(f"no BENCH_JSON line in {self.out_path}")


def run_wrk(*args, **kwargs):
    return Wrk(*args, **kwargs).result()


def snapshot_threads(pid, path):
    """Per-thread CPU of the server while it is loaded (for the analysis of a missed target)."""
    try:
        out = subprocess.run(["top", "-H", "-b", "-n1", "-p", str(pid)], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        out = f"top failed: {err}\n"
    with open(path, "a") as f:
        f.write(f"--- {time.strftime('%H:%M:%S')} load average {os.getloadavg()}\n{out}\n")


# ---------------------------------------------------------------- phases


def argon2_limit(seconds=5):
    out = subprocess.run([str(ARGON2_LIMIT), "2", str(seconds)], capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0:
        raise HarnessError(f"argon2_limit failed: {out.stderr[-500:]}")
    return float(out.stdout.strip().splitlines()[-1])


def lookup_limit(seconds=5, database_url=None):
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    out = subprocess.run([str(LOOKUP_LIMIT), str(CONNS), str(seconds)], capture_output=True,
                         text=True, timeout=120, env=env)
    if out.returncode != 0:
        raise HarnessError(f"lookup_limit failed: {out.stderr[-500:]}")
    return float(out.stdout.strip().splitlines()[-1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_to_ready(workdir, demo, database_url=None):
    """Seconds from spawning the server on an existing database to the first 200 from /ready."""
    port = free_port()
    t0 = time.perf_counter()
    server = Server(workdir, demo=demo, bind=f"127.0.0.1:{port}", database_url=database_url)
    try:
        while True:
            if server.proc.poll() is not None:
                raise HarnessError(f"server exited during start; see {workdir}/server.log")
            try:
                status, _ = request("127.0.0.1", port, "GET", "/ready", timeout=2)
                if status == 200:
                    return time.perf_counter() - t0
            except (ConnectionError, OSError, http.client.HTTPException):
                pass
            if time.perf_counter() - t0 > 30:
                raise HarnessError("server not ready after 30 s")
    finally:
        server.stop()


def median(xs):
    return statistics.median(xs)


# ---------------------------------------------------------------- one database


SETTLE_S = 2.0  # "at ready": after the start's own hashes (dummy and demo users) are idle
AFTER_FLOOD_S = 60
# The flood starts from a server at rest: the rounds before it end with their connections
# closing, and the server gives that burst's memory back at its next check (every 5 s,
# `MEMORY_CHECK_INTERVAL` in src/server.rs). Without the pause the flood's peak would count
# whatever of the last round was still waiting for that check.
REST_BEFORE_FLOOD_S = 6.0


def measure(label, results, tmp, note, database_url=None):
    """Every load on one database (SQLite when `database_url` is None); the figures."""
    results = results / label
    results.mkdir(parents=True, exist_ok=True)
    server = Server(tmp / label, database_url=database_url).wait_listening()
    rounds = {k: [] for k in ("health", "me", "me_key", "lookup", "argon2", "token", "mixed_me", "mixed_token", "flood")}
    hwm_by_phase = []
    try:
        time.sleep(SETTLE_S)
        rss_ready = server.rss_kib()
        token = login(server)
        status, body = request(server.host, server.port, "GET", "/users/me",
                               headers={"Authorization": f"Bearer {token}"})
        if status != 200:
            raise HarnessError(f"GET /users/me answered {status}: {body[:200]!r}")
        auth = f"Authorization: Bearer {token}"
        key_auth = f"Authorization: Bearer {api_key(server, token)}"
        base = server.base
        server.wait_quiet()

        for i in range(1, ROUNDS + 1):
            note(f"[{label}] round {i}/{ROUNDS}: /health")
            rounds["health"].append(run_wrk(results, f"r{i}-1-health", f"{base}/health", REPORT_LUA))
            server.wait_quiet()
            note(f"[{label}] round {i}/{ROUNDS}: /users/me")
            rounds["me"].append(run_wrk(results, f"r{i}-2-users-me", f"{base}/users/me", REPORT_LUA,
                                        headers=[auth]))
            server.wait_quiet()
            note(f"[{label}] round {i}/{ROUNDS}: /users/me with an API key")
            rounds["me_key"].append(run_wrk(results, f"r{i}-2k-users-me-api-key", f"{base}/users/me",
                                            REPORT_LUA, headers=[key_auth]))
            server.wait_quiet()
            note(f"[{label}] round {i}/{ROUNDS}: lookup_limit")
            rounds["lookup"].append(lookup_limit(database_url=database_url))
            (results / f"r{i}-2b-lookup-limit.txt").write_text(f"{rounds['lookup'][-1]}\n")
            note(f"[{label}] round {i}/{ROUNDS}: argon2_limit")
            rounds["argon2"].append(argon2_limit())
            (results / f"r{i}-3-argon2-limit.txt").write_text(f"{rounds['argon2'][-1]}\n")
            note(f"[{label}] round {i}/{ROUNDS}: /token")
            w = Wrk(results, f"r{i}-4-token", f"{base}/token", TOKEN_LUA)
            time.sleep(5)
            snapshot_threads(server.pid, results / "top-token.txt")
            rounds["token"].append(w.result())
            server.wait_quiet()
            note(f"[{label}] round {i}/{ROUNDS}: /users/me under saturated /token")
            logins = Wrk(results, f"r{i}-5-token-background", f"{base}/token", TOKEN_LUA,
                         threads=1, conns=CONNS, duration="13s")
            time.sleep(2)
            me = Wrk(results, f"r{i}-5-users-me-under-logins", f"{base}/users/me", REPORT_LUA,
                     threads=1, conns=ME_CONNS_UNDER_LOGINS, headers=[auth])
            time.sleep(5)
            snapshot_threads(server.pid, results / "top-mixed.txt")
            rounds["mixed_me"].append(me.result())
            rounds["mixed_token"].append(logins.result())
            server.wait_quiet()
            hwm_by_phase.append((f"after round {i}", server.hwm_kib()))

        # Once only: the flood leaves up to ~1,000 queued hashes that run after wrk has gone.
        note(f"[{label}] login flood: /token with 1,000 connections")
        time.sleep(REST_BEFORE_FLOOD_S)
        rss_before_flood = server.rss_kib()
        server.reset_hwm()
        w = Wrk(results, "6-token-flood-c1000", f"{base}/token", TOKEN_LUA, conns=FLOOD_CONNS)
        time.sleep(5)
        snapshot_threads(server.pid, results / "top-flood.txt")
        rounds["flood"].append(w.result())
        flood_ended = time.monotonic()
        note(f"[{label}] waiting for the hashing queue to drain, then {AFTER_FLOOD_S} s after the flood")
        server.wait_quiet(timeout=120)
        peak_flood = server.hwm_kib()
        rss_trace = []
        while time.monotonic() < flood_ended + AFTER_FLOOD_S:
            rss_trace.append((round(time.monotonic() - flood_ended), server.rss_kib()))
            time.sleep(5)
        rss_after = server.rss_kib()
        status, _ = request(server.host, server.port, "GET", "/ready")
        if status != 200:
            raise HarnessError(f"/ready answered {status} after the flood")
        hwm = server.hwm_kib()
    finally:
        server.stop()

    # Start to ready, on an existing database created by a first start.
    note(f"[{label}] start to ready: 1 creating start, then {STARTS} starts without --demo and {STARTS} with")
    ready_dir = tmp / f"{label}-ready"
    Server(ready_dir, database_url=database_url).wait_listening().stop()
    ready = [start_to_ready(ready_dir, False, database_url) for _ in range(STARTS)]
    ready_demo = [start_to_ready(ready_dir, True, database_url) for _ in range(STARTS)]
    (results / "7-start-to-ready.txt").write_text(
        "without --demo (s): " + " ".join(f"{x:.4f}" for x in ready) + "\n"
        + "with --demo (s):    " + " ".join(f"{x:.4f}" for x in ready_demo) + "\n")
    (results / "memory.txt").write_text(
        f"VmRSS at ready (+{SETTLE_S} s): {rss_ready} KiB\nVmRSS before the flood: {rss_before_flood} KiB\n"
        f"VmHWM during the flood: {peak_flood} KiB\n"
        + "".join(f"VmRSS {t} s after the flood: {kib} KiB\n" for t, kib in rss_trace)
        + "".join(f"VmHWM {lbl}: {kib} KiB\n" for lbl, kib in hwm_by_phase))
    (results / "rounds.json").write_text(json.dumps(rounds, indent=1))

    med = lambda key, field: median(r[field] for r in rounds[key])
    f = {
        "health_rps": med("health", "rps"), "health_p99": med("health", "p99_us") / 1000,
        "health_p50": med("health", "p50_us") / 1000,
        "me_rps": med("me", "rps"), "me_p99": med("me", "p99_us") / 1000,
        "me_p50": med("me", "p50_us") / 1000,
        "me_key_rps": med("me_key", "rps"), "me_key_p99": med("me_key", "p99_us") / 1000,
        "me_key_p50": med("me_key", "p50_us") / 1000,
        "lookup": median(rounds["lookup"]), "argon2": median(rounds["argon2"]),
        "token_rps": med("token", "ok_rps"), "token_p99_s": med("token", "p99_us") / 1e6,
        "token_p50_s": med("token", "p50_us") / 1e6, "token_max_s": med("token", "max_us") / 1e6,
        "token_non2xx": sum(r["non2xx"] for r in rounds["token"]),
        "mixed_p99": med("mixed_me", "p99_us") / 1000, "mixed_p50": med("mixed_me", "p50_us") / 1000,
        "mixed_rps": med("mixed_me", "rps"), "mixed_logins": med("mixed_token", "ok_rps"),
        "flood": rounds["flood"][0], "rss_ready": rss_ready / 1024, "rss_peak_flood": peak_flood / 1024,
        "rss_after_flood": rss_after / 1024, "rss_trace": rss_trace, "hwm": hwm / 1024,
        "hwm_by_phase": hwm_by_phase,
        "ready_ms": median(ready) * 1000, "ready_demo_ms": median(ready_demo) * 1000, "ready": ready,
        "rounds": rounds,
    }
    return f


def postgres_database(note):
    """A fresh PostgreSQL database for the second column, or None when PostgreSQL is not there."""
    admin = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    if os.environ.get("BENCH_POSTGRES", "1") == "0" or shutil.which("psql") is None:
        return None, None
    name = f"portcullis_bench_{os.getpid()}"
    out = subprocess.run(["psql", admin, "-qc", f'CREATE DATABASE "{name}"'], capture_output=True, text=True)
    if out.returncode != 0:
        note(f"PostgreSQL column skipped: {out.stderr.strip()}")
        return None, None
    base = admin.rsplit("/", 1)[0]

    def drop():
        subprocess.run(["psql", admin, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                       capture_output=True, text=True)

    return f"{base}/{name}", drop


# ---------------------------------------------------------------- main


def main():
    started = time.monotonic()
    load_at_start = os.getloadavg()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = BENCH / "results" / stamp
    results.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="portcullis-bench-"))
    notes = open(results / "notes.txt", "w")

    def note(msg):
        print(msg, file=sys.stderr, flush=True)
        notes.write(msg + "\n")
        notes.flush()

    note(f"load average at start: {load_at_start}; results in {results}")
    columns = {"SQLite": measure("sqlite", results, tmp, note)}
    pg_url, drop_pg = postgres_database(note)
    if pg_url:
        try:
            columns["PostgreSQL"] = measure("postgres", results, tmp, note, database_url=pg_url)
        finally:
            drop_pg()
    shutil.rmtree(tmp, ignore_errors=True)
    print_table(columns, results, load_at_start, started)
    return 0


def print_table(columns, results, load_at_start, started):
    sq = columns["SQLite"]

    def verdict(ok):
        return "PASS" if ok else "FAIL"

    # (figure, formatter of one column's value, target text, pass test on the SQLite figures)
    rows = [
        ("1  GET /health req/s", lambda c: f"{c['health_rps']:,.0f}", "reference", None),
        ("1  GET /health p99", lambda c: f"{c['health_p99']:.2f} ms", "reference", None),
        ("2  GET /users/me req/s", lambda c: f"{c['me_rps']:,.0f} ({c['me_rps'] / c['health_rps']:.0%})",
         ">= 50% of /health", lambda c: c["me_rps"] >= 0.5 * c["health_rps"]),
        ("2  GET /users/me p99 (c64)", lambda c: f"{c['me_p99']:.2f} ms", "< 5 ms", lambda c: c["me_p99"] < 5),
        ("2k GET /users/me, API key, req/s",
         lambda c: f"{c['me_key_rps']:,.0f} ({c['me_key_rps'] / c['health_rps']:.0%})",
         ">= 50% of /health", lambda c: c["me_key_rps"] >= 0.5 * c["health_rps"]),
        ("2k GET /users/me, API key, p99", lambda c: f"{c['me_key_p99']:.2f} ms", "< 5 ms",
         lambda c: c["me_key_p99"] < 5),
        ("2b DB lookup ceiling (no HTTP)", lambda c: f"{c['lookup']:,.0f}/s ({c['lookup'] / c['health_rps']:.0%})",
         "reference", None),
        ("3  Argon2 limit (2 threads)", lambda c: f"{c['argon2']:.1f}/s", "reference", None),
        ("4  POST /token logins/s (c64)", lambda c: f"{c['token_rps']:.1f} ({c['token_rps'] / c['argon2']:.0%})",
         ">= 95% of the Argon2 limit", lambda c: c["token_rps"] >= 0.95 * c["argon2"]),
        ("4  POST /token p99 (fairness)",
         lambda c: f"{c['token_p99_s']:.3f} s (<= {1.5 * CONNS / c['token_rps']:.3f})",
         "<= 1.5 * 64 / logins/s", lambda c: c["token_p99_s"] <= 1.5 * CONNS / c["token_rps"]),
        (f"5  /users/me p99 under logins (c{ME_CONNS_UNDER_LOGINS})", lambda c: f"{c['mixed_p99']:.2f} ms",
         "< 10 ms", lambda c: c["mixed_p99"] < 10),
        ("6  RSS at ready, before any login", lambda c: f"{c['rss_ready']:.1f} MiB", "< 24 MiB",
         lambda c: c["rss_ready"] < 24),
        ("6  peak RSS, 1,000-connection login flood", lambda c: f"{c['rss_peak_flood']:.1f} MiB", "< 80 MiB",
         lambda c: c["rss_peak_flood"] < 80),
        (f"6  RSS {AFTER_FLOOD_S} s after the flood", lambda c: f"{c['rss_after_flood']:.1f} MiB", "< 32 MiB",
         lambda c: c["rss_after_flood"] < 32),
        ("7  start to ready (existing DB)", lambda c: f"{c['ready_ms']:.1f} ms", "< 200 ms",
         lambda c: c["ready_ms"] < 200),
    ]
    names = list(columns)
    cells = [[fmt(columns[n]) for n in names] for _, fmt, _, _ in rows]
    w0 = max(len(r[0]) for r in rows)
    wc = [max(len(n), *(len(c[i]) for c in cells)) for i, n in enumerate(names)]
    w2 = max(len(r[2]) for r in rows)
    line = "-" * (w0 + sum(wc) + w2 + 10 + 2 * len(names))
    print()
    print(f"portcullis benchmark  {time.strftime('%Y-%m-%d %H:%M')}  nproc={os.cpu_count()}"
          f"  load avg at start {load_at_start[0]:.2f} {load_at_start[1]:.2f} {load_at_start[2]:.2f}")
    print(f"wrk -t2 -c{CONNS} -d{DURATION} unless stated; medians of {ROUNDS} runs; targets on SQLite;"
          f" results: {results.relative_to(ROOT)}")
    print(line)
    print(f"{'figure':<{w0}}  " + "  ".join(f"{n:<{wc[i]}}" for i, n in enumerate(names))
          + f"  {'target':<{w2}}  result (SQLite)")
    print(line)
    for (figure, _, target, check), row in zip(rows, cells):
        result = "-" if check is None else verdict(check(sq))
        print(f"{figure:<{w0}}  " + "  ".join(f"{v:<{wc[i]}}" for i, v in enumerate(row))
              + f"  {target:<{w2}}  {result}")
    print(line)
    print("details:")
    for name, c in columns.items():
        r = c["rounds"]
        flood = c["flood"]
        print(f" {name}:")
        print(f"  1 /health p50 {c['health_p50']:.2f} ms; runs req/s: " + ", ".join(f"{x['rps']:,.0f}" for x in r["health"]))
        print(f"  2 /users/me p50 {c['me_p50']:.2f} ms; runs req/s: " + ", ".join(f"{x['rps']:,.0f}" for x in r["me"])
              + "; runs p99 ms: " + ", ".join(f"{x['p99_us'] / 1000:.2f}" for x in r["me"]))
        print(f"  2k /users/me with an API key p50 {c['me_key_p50']:.2f} ms; runs req/s: "
              + ", ".join(f"{x['rps']:,.0f}" for x in r["me_key"]))
        print(f"  2b examples/lookup_limit {CONNS} tasks, 2 workers; runs: " + ", ".join(f"{x:,.0f}" for x in r["lookup"]))
        print("  3 Argon2 limit runs: " + ", ".join(f"{x:.1f}" for x in r["argon2"]))
        print(f"  4 /token p50 {c['token_p50_s']:.3f} s, max {c['token_max_s']:.3f} s; runs logins/s: "
              + ", ".join(f"{x['ok_rps']:.1f}" for x in r["token"]) + f"; non-2xx {c['token_non2xx']}")
        print(f"  5 wrk -t1 -c{ME_CONNS_UNDER_LOGINS} /users/me ({c['mixed_rps']:,.0f} req/s, p50 {c['mixed_p50']:.2f} ms)"
              f" beside wrk -t1 -c{CONNS} /token ({c['mixed_logins']:.1f} logins/s); runs p99 ms: "
              + ", ".join(f"{x['p99_us'] / 1000:.2f}" for x in r["mixed_me"]))
        print(f"  6 flood wrk -t2 -c{FLOOD_CONNS} -d{DURATION} /token (once): {flood['ok_rps']:.1f} logins/s, "
              f"non-2xx {flood['non2xx']} {json.dumps(flood['statuses'])}, socket errors {flood['socket_errors']}, "
              f"p99 {flood['p99_us'] / 1e6:.2f} s; RSS after the flood (s: MiB): "
              + ", ".join(f"{t}: {kib / 1024:.1f}" for t, kib in c["rss_trace"])
              + f"; VmHWM whole run {c['hwm']:.1f} MiB")
        print("  7 start to ready without --demo (ms): " + ", ".join(f"{x * 1000:.1f}" for x in c["ready"])
              + f"; with --demo: median {c['ready_demo_ms']:.1f} ms")
    print(f"  harness time {time.monotonic() - started:.0f} s; load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HarnessError as err:
        print(f"bench: error: {err}", file=sys.stderr)
        sys.exit(1)
