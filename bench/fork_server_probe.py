"""Probe of the Python fork server alone: fork-to-hello, kill-to-ready, bursts, memory.

    python3 bench/fork_server_probe.py [SCRIPT] [--forks 100] [--burst 256] [--alive 16] [--keeper target/release/flw]

Drives ``python -m flw --fork-server SCRIPT`` as the supervisor does (a
SOCK_SEQPACKET control socket on fd 3, a lifeline pipe on fd 4) and prints:
- fork-to-hello and fork-to-first-result, p50 and p90 over ``--forks``
  workers forked one at a time (each ends with shutdown before the next);
- kill-to-ready: SIGUSR1 to a worker's keeper, wait for ``exited``, fork
  the next one, until its ``hello`` (and its first result);
- a burst: ``--burst`` fork requests sent at once, until every ``hello``;
- the PSS of the fork server, of each keeper and each worker (from
  ``/proc/PID/smaps_rollup``) with ``--alive`` workers alive, and the same
  for exec'd workers (``python -m flw SCRIPT``) for comparison.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDK = ROOT / "workers-python" / "src"
sys.path.insert(0, str(SDK))

from flw.worker import _fork_wire  # noqa: E402
from flw.worker._protocol import encode_line  # noqa: E402


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLW_")}
    env["PYTHONPATH"] = str(SDK)
    env.update(extra)
    return env


class Worker:
    def __init__(self, sock: socket.socket, keeper: int) -> None:
        self.sock = sock
        self.keeper = keeper
        self.pid = 0
        self.buffer = b""

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the worker closed its channel")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def welcome_and_call(self) -> None:
        self.sock.sendall(
            encode_line({"type": "welcome", "protocol": 1})
            + encode_line({"type": "call", "id": 1, "tool": "echo", "args": {"text": "x"}})
        )
        while b'"type":"result"' not in self.line():
            pass


class ForkServer:
    def __init__(self, script: str, keeper_exe: str = "") -> None:
        self.control, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lifeline_r, self.lifeline = os.pipe()
        control_fd = fcntl.fcntl(child.fileno(), fcntl.F_DUPFD_CLOEXEC, 10)
        lifeline_fd = fcntl.fcntl(lifeline_r, fcntl.F_DUPFD_CLOEXEC, 10)

        def descriptors() -> None:
            os.dup2(control_fd, 3)
            os.dup2(lifeline_fd, 4)

        env = environment(
            FLW_CHANNEL_FD="3",
            FLW_LIFELINE_FD="4",
            FLW_FORK_SERVER="1",
            FLW_KILL_GRACE_MS="1000",
            FLW_WORKER="probe#fork",
            FLW_KEEPER_EXE=keeper_exe,
        )
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "flw", "--fork-server", script],
            env=env,
            close_fds=False,
            preexec_fn=descriptors,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
        for fd in (lifeline_r, control_fd, lifeline_fd):
            os.close(fd)
        child.close()
        self.devnull = os.open(os.devnull, os.O_WRONLY)
        self.next_id = 0
        self.pending: list[dict] = []
        ready = self.expect("ready")
        self.ready_seconds = time.perf_counter() - started
        assert ready["pid"] == self.proc.pid

    def recv(self) -> dict:
        data = self.control.recv(_fork_wire.MAX_DATAGRAM)
        if not data:
            raise EOFError("the fork server closed the control socket")
        return _fork_wire.decode(data, "fork_server")

    def expect(self, kind: str, **members: object) -> dict:
        for message in self.pending:
            if message["type"] == kind and members.items() <= message.items():
                self.pending.remove(message)
                return message
        while True:
            message = self.recv()
            if message["type"] == kind and members.items() <= message.items():
                return message
            self.pending.append(message)

    def request(self) -> tuple[int, socket.socket]:
        self.next_id += 1
        parent, child = socket.socketpair()
        message = _fork_wire.encode({"type": "fork", "id": self.next_id, "label": f"probe#{self.next_id}"})
        socket.send_fds(self.control, [message], [child.fileno(), self.devnull, 2])
        child.close()
        return self.next_id, parent

    def close(self) -> None:
        self.control.send(_fork_wire.encode({"type": "shutdown"}))
        self.proc.wait(10)
        os.close(self.lifeline)
        self.control.close()
        os.close(self.devnull)


def pss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise ValueError(f"no Pss in /proc/{pid}/smaps_rollup")


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"min {ordered[0] * 1000:6.2f}   p50 {p50 * 1000:6.2f}   p90 {p90 * 1000:6.2f} ms"


def one_at_a_time(server: ForkServer, count: int) -> None:
    to_hello, to_result = [], []
    for _ in range(count):
        started = time.perf_counter()
        request, sock = server.request()
        worker = Worker(sock, 0)
        worker.line()
        to_hello.append(time.perf_counter() - started)
        worker.welcome_and_call()
        to_result.append(time.perf_counter() - started)
        worker.keeper = server.expect("forked", id=request)["pid"]
        sock.sendall(encode_line({"type": "shutdown"}))
        server.expect("exited", pid=worker.keeper)
        sock.close()
    print(f"fork to hello          {percentiles(to_hello)}   ({count} forks, one at a time)")
    print(f"fork to first result   {percentiles(to_result)}")


def kill_to_ready(server: ForkServer, count: int) -> None:
    request, sock = server.request()
    worker = Worker(sock, server.expect("forked", id=request)["pid"])
    worker.line()
    worker.welcome_and_call()
    to_hello, to_result = [], []
    for _ in range(count):
        started = time.perf_counter()
        os.kill(worker.keeper, signal.SIGUSR1)
        server.expect("exited", pid=worker.keeper)
        worker.sock.close()
        request, sock = server.request()
        worker = Worker(sock, 0)
        worker.line()
        to_hello.append(time.perf_counter() - started)
        worker.welcome_and_call()
        to_result.append(time.perf_counter() - started)
        worker.keeper = server.expect("forked", id=request)["pid"]
    os.kill(worker.keeper, signal.SIGUSR1)
    server.expect("exited", pid=worker.keeper)
    worker.sock.close()
    print(f"kill to hello          {percentiles(to_hello)}   (SIGUSR1 to the keeper, exited, fork)")
    print(f"kill to first result   {percentiles(to_result)}")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time of a process itself and of its reaped children (and theirs)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / tick
    children = (int(fields[13]) + int(fields[14])) / tick
    return own, children


def burst(server: ForkServer, count: int) -> None:
    own_before, children_before = cpu_seconds(server.proc.pid)
    started = time.perf_counter()
    socks = {}
    for _ in range(count):
        request, sock = server.request()
        socks[sock] = request
    waiting = set(socks)
    while waiting:
        ready, _, _ = select.select(list(waiting), [], [], 30)
        if not ready:
            raise TimeoutError(f"{len(waiting)} workers sent no hello within 30 s")
        for sock in ready:
            sock.recv(65536)
            waiting.discard(sock)
    took = time.perf_counter() - started
    print(f"burst                  {count} workers forked, every hello in {took * 1000:.0f} ms")
    keepers = [server.expect("forked", id=request)["pid"] for request in socks.values()]
    for keeper in keepers:
        os.kill(keeper, signal.SIGUSR1)
    for keeper in keepers:
        server.expect("exited", pid=keeper)
    for sock in socks:
        sock.close()
    own_after, children_after = cpu_seconds(server.proc.pid)
    print(
        f"CPU per worker         fork server {(own_after - own_before) / count * 1000:.2f} ms, "
        f"keeper and worker {(children_after - children_before) / count * 1000:.2f} ms "
        "(start to kill, all included)"
    )


def memory(server: ForkServer, script: str, alive: int) -> None:
    workers = []
    for _ in range(alive):
        request, sock = server.request()
        worker = Worker(sock, server.expect("forked", id=request)["pid"])
        worker.pid = int(worker.line().split(b'"pid":')[1].split(b",")[0])
        worker.welcome_and_call()
        workers.append(worker)
    time.sleep(0.2)
    keepers = statistics.median(pss_kb(w.keeper) for w in workers)
    forked = statistics.median(pss_kb(w.pid) for w in workers)
    print(
        f"PSS with {alive} alive    fork server {pss_kb(server.proc.pid) / 1024:.1f} MB, "
        f"keeper {keepers / 1024:.2f} MB, worker {forked / 1024:.2f} MB (medians)"
    )
    for worker in workers:
        os.kill(worker.keeper, signal.SIGUSR1)
        server.expect("exited", pid=worker.keeper)
        worker.sock.close()

    execs, times = [], []
    for _ in range(min(alive, 8)):
        parent, child = socket.socketpair()
        fd = child.fileno()
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "flw", script],
            env=environment(FLW_CHANNEL_FD="3", FLW_WORKER="probe#exec"),
            close_fds=False,
            preexec_fn=lambda fd=fd: os.dup2(fd, 3),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        child.close()
        worker = Worker(parent, proc.pid)
        worker.line()
        times.append(time.perf_counter() - started)
        worker.welcome_and_call()
        execs.append((proc, worker))
    time.sleep(0.2)
    exec_pss = statistics.median(pss_kb(proc.pid) for proc, _ in execs)
    print(f"exec'd worker          spawn to hello {percentiles(times)}, PSS {exec_pss / 1024:.2f} MB (no keeper)")
    for proc, worker in execs:
        worker.sock.sendall(encode_line({"type": "shutdown"}))
        proc.wait(10)
        worker.sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script", nargs="?", default=str(ROOT / "examples" / "hello-python" / "agent.py"))
    parser.add_argument("--forks", type=int, default=100)
    parser.add_argument("--burst", type=int, default=256)
    parser.add_argument("--alive", type=int, default=16)
    parser.add_argument(
        "--keeper",
        default="",
        metavar="FLW",
        help="the flw binary the keepers exec (flw __keeper), as flw serves; default: Python keepers",
    )
    args = parser.parse_args()
    server = ForkServer(args.script, args.keeper)
    try:
        keeper = f"keepers: {args.keeper} __keeper" if args.keeper else "keepers: Python"
        ready_ms = server.ready_seconds * 1000
        print(f"{args.script}: fork server ready in {ready_ms:.0f} ms, on {os.cpu_count()} cores; {keeper}")
        print(f"load average at start: {os.getloadavg()[0]:.2f} (timings mean little on a busy machine)")
        one_at_a_time(server, args.forks)
        kill_to_ready(server, args.forks)
        burst(server, args.burst)
        memory(server, args.script, args.alive)
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    finally:
        server.close()


if __name__ == "__main__":
    main()
