"""Client-side CPU per request of the simulator's remote agent.

Issue 2 target: <= 100 us of simulator CPU per request, so that with
``--concurrency 64`` the service, not the simulator, is the bottleneck.

A fast tiny COMPAT server (asyncio, keep-alive, constant answer) runs in a
*separate process*; the client's CPU is read with ``time.process_time()`` in
its own process only, so the server's work is not counted.

Modes:
  client   the asyncio keep-alive client alone (sim.client), C connections in flight
  threads  http.client in C threads (the alternative we measured against)
  sim      the whole remote agent loop of ``sim.run`` (user model + client)
           on a generated world (needs --world DIR)

    .venv/bin/python bench/sim_remote_bench.py --requests 50000 --concurrency 64
    .venv/bin/python bench/sim_remote_bench.py --mode threads --requests 20000
    .venv/bin/python bench/sim_remote_bench.py --mode sim --world data/world --episodes 5000
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

_ANSWER = b'{"user": 1, "track": 7}'


# --- the fast server (own process) ----------------------------------------------------------
class _ServerProto(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = []
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = self.buf[:end]
            length = 0
            i = head.lower().find(b"content-length:")
            if i >= 0:
                length = int(head[i + 15 :].split(b"\r\n", 1)[0])
            if len(self.buf) < end + 4 + length:
                break
            user = head.split(b" ", 2)[1].rsplit(b"/", 1)[-1]
            self.buf = self.buf[end + 4 + length :]
            body = b'{"user": %s, "track": 7}' % (user if user.isdigit() else b"0")
            out.append(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
        if out:
            self.t.write(b"".join(out))


def serve(port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_ServerProto, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server() -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("bench server did not start")


# --- clients -----------------------------------------------------------------------------------
def bench_client(port: int, n: int, concurrency: int) -> tuple[float, float, int]:
    from sim.agents.remote import RemoteAgent
    from sim.client import ClientOptions

    agent = RemoteAgent(ClientOptions(port=port), n_tracks=1000)
    per = n // concurrency

    async def worker() -> None:
        slot: list = [None]
        track = 1
        for _ in range(per):
            track = await agent.next(slot, 1, track, 0.5)
        slot[0].close()

    async def main() -> None:
        await asyncio.gather(*(worker() for _ in range(concurrency)))

    c0, w0 = time.process_time(), time.perf_counter()
    asyncio.run(main())
    return time.process_time() - c0, time.perf_counter() - w0, per * concurrency


def bench_threads(port: int, n: int, concurrency: int) -> tuple[float, float, int]:
    per = n // concurrency

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        track = 1
        for _ in range(per):
            body = json.dumps({"track": track, "time": 0.5})
            conn.request("POST", "/next/1", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            track = json.loads(resp.read())["track"]
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    c0, w0 = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.process_time() - c0, time.perf_counter() - w0, per * concurrency


def bench_sim(port: int, world_dir: Path, episodes: int, concurrency: int) -> tuple[float, float, int]:
    """The CLI's remote path: user model sessions + client, counted per answered request."""
    from sim.agents.remote import RemoteAgent
    from sim.agents.runner import Simulation, make_jobs
    from sim.client import ClientOptions
    from sim.world import World

    world = World.load(world_dir)
    sim = Simulation(world, seed=31337)
    agent = RemoteAgent(ClientOptions(port=port), world.n_tracks)
    sim.begin_day(1)
    c0, w0 = time.process_time(), time.perf_counter()
    sim.run(1, agent, make_jobs(episodes), concurrency)
    return time.process_time() - c0, time.perf_counter() - w0, agent.requests


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=["client", "threads", "sim"], default="client")
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--world", type=Path, default=Path("data/world"))
    ap.add_argument("--episodes", type=int, default=5000)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return
    proc, port = _start_server()
    try:
        if args.mode == "client":
            cpu, wall, n = bench_client(port, args.requests, args.concurrency)
        elif args.mode == "threads":
            cpu, wall, n = bench_threads(port, args.requests, args.concurrency)
        else:
            cpu, wall, n = bench_sim(port, args.world, args.episodes, args.concurrency)
    finally:
        proc.kill()
        proc.wait()
    print(
        f"mode={args.mode} concurrency={args.concurrency} requests={n} "
        f"client_cpu={cpu:.3f}s wall={wall:.3f}s "
        f"cpu_per_request={cpu / n * 1e6:.1f}us throughput={n / wall:,.0f} req/s"
    )


if __name__ == "__main__":
    main()
