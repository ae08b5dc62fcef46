#!/usr/bin/env python3
"""Slow and greedy clients against a `portcullis` binary (issue 9, "Connections").

    python3 bench/slow_clients.py BINARY timeouts   # which slow sockets are still open, and when
    python3 bench/slow_clients.py BINARY memory     # RSS with 200 sockets of unfinished 380 KiB heads
    python3 bench/slow_clients.py BINARY spin       # CPU under `ulimit -n 256` with 300 slow sockets

Loopback only; every scenario is bounded (about 70 s at most). The server runs with its defaults
unless the scenario says otherwise.
"""

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time


def start(binary, limit=None, env=None):
    data = tempfile.mkdtemp(prefix="portcullis-slow-")
    environment = {"PORTCULLIS_DATA_DIR": data, "PORTCULLIS_LOG": "warn", "PATH": os.environ["PATH"]}
    environment.update(env or {})
    command = [binary, "serve", "--bind", "127.0.0.1:0"]
    if limit:
        command = ["sh", "-c", f'ulimit -n {limit} && exec "$0" "$@"'] + command
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=open(os.environ.get("SLOW_LOG", os.devnull), "w"), env=environment, text=True)
    first = proc.stdout.readline().strip()
    host, port = first.rsplit("/", 1)[1].split(":")
    threading.Thread(target=lambda: proc.stdout.read(), daemon=True).start()
    time.sleep(0.5)
    return proc, (host, int(port))


def connect(address, source="127.0.0.2", timeout=5):
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(timeout)
    sock.connect(address)
    return sock


def is_open(sock):
    sock.setblocking(False)
    try:
        data = sock.recv(65536)
        return False if data == b"" else "answered: " + data.split(b"\r\n", 1)[0].decode()
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def health(address, source="127.0.0.3", patience=3):
    try:
        started = time.time()
        sock = connect(address, source, patience)
        sock.settimeout(patience)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status = sock.recv(100).split(b"\r\n", 1)[0].decode()
        return f"{status} in {time.time() - started:.2f} s"
    except OSError as err:
        return f"no answer ({err})"


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timeouts(binary):
    proc, address = start(binary)
    sockets = {}
    for n in range(2):
        s = connect(address)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sockets[f"half-sent head {n}"] = s
    for n in range(2):
        s = connect(address)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(65536)
        sockets[f"idle keep-alive {n}"] = s
    body = connect(address)
    body.sendall(b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n")
    sockets["body, a byte every 10 s"] = body
    started = time.time()
    answers = {}
    for check in (15, 35, 65):
        while time.time() - started < check:
            if int(time.time() - started) % 10 == 0:
                try:
                    body.send(b"a")
                except OSError:
                    pass
            time.sleep(1)
        print(f"after {check} s:")
        for name, sock in sockets.items():
            state = answers.get(name) or is_open(sock)
            if isinstance(state, str):
                answers[name] = state
            print(f"  {name}: {'open' if state is True else state if state else 'closed'}")
        print(f"  /health from 127.0.0.3: {health(address)}")
    proc.kill()


def memory(binary):
    proc, address = start(binary)
    before = rss_mib(proc.pid)
    sockets = []
    chunk = b"X-Filler-%d: " + b"a" * 4000 + b"\r\n"
    for n in range(200):
        try:
            s = connect(address, f"127.0.0.{2 + n % 10}")
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            sockets.append(s)
        except OSError:
            pass
    sent = 0
    for s in sockets:
        try:
            for i in range(95):  # 95 x 4 KiB = 380 KiB of header fields, never finished
                s.sendall(chunk.replace(b"%d", str(i).encode()))
            sent += 1
        except OSError:
            pass
    time.sleep(3)
    print(f"RSS {before:.0f} MiB before, {rss_mib(proc.pid):.0f} MiB with 200 sockets "
          f"({sent} took all 380 KiB; {sum(1 for s in sockets if is_open(s) is True)} still open)")
    print(f"/health from 127.0.0.20: {health(address, '127.0.0.20')}")
    proc.kill()


def spin(binary):
    proc, address = start(binary, limit=256)
    sockets = []
    for n in range(300):
        try:
            s = connect(address, f"127.0.0.{2 + n % 10}", timeout=0.5)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            sockets.append(s)
        except OSError:
            pass
    started = time.time()
    before = cpu_seconds(proc.pid)
    time.sleep(5)
    print(f"{len(sockets)} slow sockets; CPU {100 * (cpu_seconds(proc.pid) - before) / 5:.0f}% over 5 s")
    asked = time.time() - started
    print(f"/health from 127.0.0.20 asked {asked:.0f} s after the slow sockets, waiting up to 20 s: "
          f"{health(address, '127.0.0.20', 20)}")
    proc.kill()


if __name__ == "__main__":
    {"timeouts": timeouts, "memory": memory, "spin": spin}[sys.argv[2]](sys.argv[1])
