"""Benchmark the labeling app end to end: latency at human pace, throughput at saturation, durability.

Starts the real app (``python -m alignment.labeling serve``, i.e. ``align-label serve``) on 127.0.0.1 with a fresh database in a
subprocess, and drives it with N concurrent bot annotators through its real HTTP API (login cookie,
``POST /gradio_api/run/submit_label``, which returns the next item: one round trip from "submit" to
"next item shown") using one light asyncio ``httpx.AsyncClient`` per bot. Phases:

1. human pace: every bot submits one label every ``--interval`` seconds (random phase) for
   ``--human-seconds``; reports the p50/p95/p99 latency of submit -> next item;
1b. login flood: the same human pace for ``--flood-seconds`` while one client (one address) sends
   wrong passwords for another account as fast as ``--flood-concurrency`` connections allow; reports
   the annotators' p95 (``login_flood_p95_ms``) and what the flood got (most attempts should be
   refused with 429 by the login throttle, at no scrypt cost);
2. saturation: every bot submits as fast as it can for ``--saturation-seconds``; reports labels/s;
3. kill: bots keep labeling while the server is SIGKILLed ``--kill-trials`` times and restarted; bots
   re-login and retry (a retried submit is idempotent on the server).

Engines and servers: ``--db sqlite`` (default) serves a SQLite file; ``--db postgres`` starts a throwaway
PostgreSQL cluster (durable settings: fsync and synchronous_commit on) and ``--db postgresql://...``
uses a fresh database on that server. ``--servers N`` starts N app servers on the one database; bot
``i`` works on server ``i % N`` and, as behind a reverse proxy that fails over, moves to the next server
when its own does not answer (its login cookie is honoured there: sessions live in the database). The
kill phase kills server 0 each time.

Afterwards the database is opened directly: ``lost`` counts labels the server acknowledged (HTTP 200,
``ok``) that are not in it (``lost_after_kill``: those acknowledged during the kill phase),
``over_assigned`` counts items with more labels than the overlap. The last line printed is one JSON
object with the figures.

    python scripts/bench_labeling.py                  # 50 bots, 40 s human pace, 20 s saturation, 3 kills
    python scripts/bench_labeling.py --bots 10 --human-seconds 10 --saturation-seconds 5 --kill-trials 1
    python scripts/bench_labeling.py --db postgres --servers 2   # two app servers on a throwaway PostgreSQL
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchlib import ROOT, emit

sys.path.insert(0, str(ROOT))

from alignment.data.world import DemoWorld  # noqa: E402
from labeling_ui.demo import demo_items  # noqa: E402
from labeling_ui.passwords import hash_password  # noqa: E402
from labeling_ui.serving import free_port  # noqa: E402
from labeling_ui.store import LabelStore  # noqa: E402
from pgserver import ThrowawayPostgres, create_database  # noqa: E402

log = logging.getLogger("bench_labeling")
PROJECT = "bench"
CHOICES = ("A", "B", "tie", "both_bad")
#: The account the login flood guesses passwords for (not one of the bots: they must keep working).
FLOOD_TARGET = "flood-target"
#: Every bot account's password.
PASSWORD = "bench-password"


class Server:
    """The app in a subprocess; ``kill()`` is SIGKILL, ``start()`` waits until it answers."""

    def __init__(self, db: str, port: int, workdir: Path, extra: list[str]) -> None:
        self.db, self.port, self.workdir, self.extra = db, port, workdir, extra
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 120.0) -> float:
        t0 = time.monotonic()
        self.starts += 1
        logf = open(self.workdir / f"server-{self.port}-{self.starts}.log", "w")  # noqa: SIM115 - lives with the process
        cmd = [sys.executable, "-m", "alignment.labeling", "serve", f"label.db={self.db}", f"label.port={self.port}",
               f"label.project={PROJECT}", f"run.dir={self.workdir}", *self.extra]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT,
                                     env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                # a port still held by the killed process: try again
                time.sleep(0.5)
                self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT)
                continue
            try:
                if httpx.get(self.url + "/gradio_api/app_id", timeout=2).status_code < 500:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server did not start; see {self.workdir}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux /proc), load-independent."""
        assert self.proc is not None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Bot:
    """One annotator over the HTTP API; survives server restarts (re-login, retry)."""

    def __init__(self, urls: list[str], name: str, password: str, rng: random.Random) -> None:
        self.name, self.password, self.rng = name, password, rng
        self.urls, self.url = urls, urls[0]
        self.failovers = 0
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0),
                                      headers={"accept-encoding": "identity"},
                                      limits=httpx.Limits(max_connections=2, max_keepalive_connections=1))
        self.session_hash = f"bench-{name}"
        self.item: dict | None = None
        self.acked: dict[int, str] = {}          # label id -> phase it was acknowledged in
        self.phase = "setup"
        self.errors = 0

    async def login(self) -> None:
        while True:
            try:
                r = await self.http.post(self.url + "/login", data={"username": self.name, "password": self.password})
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                self.fail_over()
            await asyncio.sleep(0.2)

    async def call(self, api_name: str, *data) -> dict:
        """POST with retries across server restarts: 401 -> login again; connection errors -> the next
        server (or, with one server, the same one again) after a short wait."""
        while True:
            try:
                r = await self.http.post(f"{self.url}/gradio_api/run/{api_name}",
                                         json={"data": list(data), "session_hash": self.session_hash})
            except httpx.HTTPError:
                self.errors += 1
                self.fail_over()
                await asyncio.sleep(0.2)
                continue
            if r.status_code == 401:
                await self.login()
                continue
            if r.status_code != 200:
                self.errors += 1
                await asyncio.sleep(0.2)
                continue
            return r.json()["data"][0]

    def fail_over(self) -> None:
        """What a reverse proxy does when a server stops answering: send the next request elsewhere."""
        if len(self.urls) > 1:
            self.url = self.urls[(self.urls.index(self.url) + 1) % len(self.urls)]
            self.failovers += 1

    async def submit(self) -> bool:
        """Label the current item (random answer); False when there is nothing left."""
        if self.item is None or self.item.get("assignment") is None:
            self.item = await self.call("next_item")
            if self.item.get("assignment") is None:
                return False
        choice = self.rng.choice(CHOICES)
        strength = self.rng.randint(1, 4) if choice in ("A", "B") else None
        result = await self.call("submit_label", self.item["assignment"], choice, strength, [], [], "", None)
        if result.get("ok"):
            self.acked[result["label_id"]] = self.phase
        self.item = result["next"]
        return True


async def human_pace(bots: list[Bot], seconds: float, interval: float) -> list[float]:
    latencies: list[float] = []
    end = time.monotonic() + seconds

    async def run(bot: Bot) -> None:
        await asyncio.sleep(bot.rng.uniform(0, interval))
        while time.monotonic() < end:
            t0 = time.perf_counter()
            if not await bot.submit():
                return
            latencies.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - t0)))

    await asyncio.gather(*(run(b) for b in bots))
    return latencies


async def login_flood(url: str, account: str, seconds: float, concurrency: int) -> dict[str, int]:
    """Wrong passwords for ``account`` from one client for ``seconds``; HTTP status -> count."""
    end = time.monotonic() + seconds
    statuses: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30.0,
                                 limits=httpx.Limits(max_connections=concurrency)) as http:
        async def run(worker: int) -> None:
            n = 0
            while time.monotonic() < end:
                n += 1
                try:
                    r = await http.post("/login", data={"username": account, "password": f"wrong-{worker}-{n}"})
                    key = str(r.status_code)
                except httpx.HTTPError as e:
                    key = type(e).__name__
                statuses[key] = statuses.get(key, 0) + 1

        await asyncio.gather(*(run(w) for w in range(concurrency)))
    return statuses


async def saturate(bots: list[Bot], seconds: float) -> tuple[int, float]:
    end = time.monotonic() + seconds
    counts = [0]
    t0 = time.monotonic()

    async def run(bot: Bot) -> None:
        before = len(bot.acked)
        while time.monotonic() < end:
            if not await bot.submit():
                break
        counts[0] += len(bot.acked) - before

    await asyncio.gather(*(run(b) for b in bots))
    return counts[0], time.monotonic() - t0


async def kill_phase(bots: list[Bot], server: Server, trials: int, rng: random.Random,
                     min_labels_between: int = 100) -> list[float]:
    stop = asyncio.Event()
    restarts: list[float] = []

    async def run(bot: Bot) -> None:
        while not stop.is_set():
            if not await bot.submit():
                return
            await asyncio.sleep(bot.rng.uniform(0.0, 0.2))    # busy, not saturated

    def acked_now() -> int:
        return sum(len(b.acked) for b in bots)

    async def killer() -> None:
        for trial in range(trials):
            # Kill mid-load: only once the bots are back at work (re-logged in, labeling) after a restart.
            start, deadline = acked_now(), time.monotonic() + 60
            while acked_now() - start < min_labels_between and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            acked = acked_now()
            server.kill()
            log.info("kill %d/%d: SIGKILL with %d labels acknowledged so far; restarting", trial + 1, trials, acked)
            restarts.append(await asyncio.to_thread(server.start))
            log.info("kill %d/%d: server back after %.1f s", trial + 1, trials, restarts[-1])
        start, deadline = acked_now(), time.monotonic() + 60
        while acked_now() - start < min_labels_between and time.monotonic() < deadline:   # works after restart
            await asyncio.sleep(0.1)
        stop.set()

    await asyncio.gather(killer(), *(run(b) for b in bots))
    return restarts


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


async def main_async(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-labeling-"))
    postgres: ThrowawayPostgres | None = None
    if args.db == "sqlite":
        db = str(workdir / "labels.db")
    elif args.db == "postgres":
        postgres = ThrowawayPostgres(durable=True).start()
        db = create_database(postgres.url, "bench")
    elif args.db.startswith(("postgresql://", "postgres://")):
        db = create_database(args.db)
    else:
        raise SystemExit(f"--db: expected sqlite, postgres or a postgresql:// URL, got {args.db!r}")
    try:
        return await run_bench(args, workdir, db)
    finally:
        if postgres is not None:
            postgres.stop()


def prepare_database(args: argparse.Namespace, db: str) -> str:
    """Queue ``args.items`` demo pairs and make the bots' accounts; returns the engine's name."""
    store = LabelStore(db)
    engine = "postgresql" if store.postgres else "sqlite"
    store.add_items(PROJECT, demo_items(DemoWorld(0), args.items, seed=1), overlap=args.overlap)
    # Bot accounts: one salted scrypt hash, written directly (hashing 50 passwords is not what we measure).
    shared_hash = hash_password(PASSWORD)
    with store.write() as c:
        for i in range(args.bots):
            c.execute("INSERT INTO annotators (name, role, pw_hash, created_at) VALUES (?, 'annotator', ?, ?)",
                      (f"bench{i:03d}", shared_hash, time.time()))
        c.execute("INSERT INTO annotators (name, role, pw_hash, created_at) VALUES (?, 'admin', ?, ?)",
                  (FLOOD_TARGET, shared_hash, time.time()))
    store.close()
    return engine


async def run_phases(args: argparse.Namespace, servers: list[Server], bots: list[Bot], rng: random.Random) -> dict:
    """Human pace, the login flood, saturation and the kills; what each measured."""
    await asyncio.gather(*(b.login() for b in bots))
    await asyncio.gather(*(b.call("next_item") for b in bots))

    for b in bots:
        b.phase = "human"
    log.info("phase 1: human pace, one label per bot every %.1f s for %.0f s", args.interval, args.human_seconds)
    latencies = await human_pace(bots, args.human_seconds, args.interval)
    log.info("human pace: %d labels, latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms", len(latencies),
             pct(latencies, 50) or 0, pct(latencies, 95) or 0, pct(latencies, 99) or 0)

    flood: dict[str, int] = {}
    flood_latencies: list[float] = []
    if args.flood_seconds > 0:
        log.info("phase 1b: human pace for %.0f s while one client floods wrong logins for %r (%d connections)",
                 args.flood_seconds, FLOOD_TARGET, args.flood_concurrency)
        flood_latencies, flood = await asyncio.gather(
            human_pace(bots, args.flood_seconds, args.interval),
            login_flood(servers[0].url, FLOOD_TARGET, args.flood_seconds, args.flood_concurrency))
        log.info("under the login flood: %d labels, latency p50 %.1f ms, p95 %.1f ms; flood answers %s",
                 len(flood_latencies), pct(flood_latencies, 50) or 0, pct(flood_latencies, 95) or 0, flood)

    for b in bots:
        b.phase = "saturation"
    log.info("phase 2: saturation for %.0f s", args.saturation_seconds)
    cpu0, client0 = sum(s.cpu_seconds() for s in servers), time.process_time()
    n_sat, elapsed = await saturate(bots, args.saturation_seconds)
    cpu_ms = (sum(s.cpu_seconds() for s in servers) - cpu0) * 1000 / max(1, n_sat)
    client_ms = (time.process_time() - client0) * 1000 / max(1, n_sat)
    log.info("saturation: %d labels in %.1f s = %.1f labels/s; CPU per label: server %.2f ms (%.0f%% of a core), "
             "bench client %.2f ms", n_sat, elapsed, n_sat / elapsed, cpu_ms, cpu_ms * n_sat / elapsed / 10, client_ms)

    for b in bots:
        b.phase = "kill"
    restarts: list[float] = []
    if args.kill_trials:
        log.info("phase 3: %d SIGKILLs of the server under load", args.kill_trials)
        restarts = await kill_phase(bots, servers[0], args.kill_trials, rng)
    return {
        "p50_ms_human_pace": round(pct(latencies, 50) or 0, 1),
        "p95_ms_human_pace": round(pct(latencies, 95) or 0, 1),
        "p99_ms_human_pace": round(pct(latencies, 99) or 0, 1),
        "labels_human_pace": len(latencies),
        "login_flood_p95_ms": round(pct(flood_latencies, 95) or 0, 1) if flood_latencies else None,
        "login_flood_attempts": sum(flood.values()),
        "login_flood_refused_429": flood.get("429", 0),
        "labels_per_s_saturation": round(n_sat / elapsed, 1),
        "server_cpu_ms_per_label": round(cpu_ms, 2),
        "client_cpu_ms_per_label": round(client_ms, 2),
        "restarts": restarts,
    }


def audit(db: str, bots: list[Bot], overlap: int) -> dict:
    """The database read directly afterwards: acknowledged labels lost, over-assigned items, invariants."""
    check = LabelStore(db)
    with check.read() as c:
        stored = {r[0] for r in c.execute("SELECT id FROM labels WHERE withdrawn_at IS NULL")}
        over = c.execute("""SELECT COUNT(*) FROM (SELECT l.item_id FROM labels l JOIN items i ON i.id = l.item_id
                            WHERE i.is_gold = 0 AND l.withdrawn_at IS NULL GROUP BY l.item_id HAVING COUNT(*) > ?) o""",
                         (overlap,)).fetchone()[0]
        twice = c.execute("""SELECT COUNT(*) FROM (SELECT 1 FROM labels WHERE withdrawn_at IS NULL
                             GROUP BY item_id, annotator_id
                             HAVING COUNT(*) > 1) t""").fetchone()[0]
    problems = check.check_invariants(PROJECT)
    check.close()
    acked = {lid: phase for b in bots for lid, phase in b.acked.items()}
    lost = [lid for lid in acked if lid not in stored]
    log.info("acknowledged %d labels, %d in the database, %d lost (%d of them acknowledged in the kill phase); "
             "%d over-assigned items, %d annotator-item repeats, %d invariant problems",
             len(acked), len(stored), len(lost), sum(acked[lid] == "kill" for lid in lost), over, twice, len(problems))
    for p in problems[:10]:
        log.warning("invariant: %s", p)
    return {"lost": len(lost), "over_assigned": over,
            "lost_after_kill": sum(acked[lid] == "kill" for lid in lost),
            "acked_in_kill_phase": sum(p == "kill" for p in acked.values()), "invariant_problems": len(problems)}


async def run_bench(args: argparse.Namespace, workdir: Path, db: str) -> dict:
    engine = prepare_database(args, db)
    log.info("workdir %s: %s database, %d items (overlap %d), %d bots, %d server(s)", workdir, engine, args.items,
             args.overlap, args.bots, args.servers)
    servers = [Server(db, (args.port + i if args.port else free_port()), workdir,
                      [f"label.synchronous={args.synchronous}", "label.gold_rate=0.0"]) for i in range(args.servers)]
    for server in servers:
        log.info("server up in %.1f s at %s", server.start(), server.url)
    urls = [s.url for s in servers]
    rng = random.Random(args.seed)
    bots = [Bot(urls[i % len(urls):] + urls[:i % len(urls)], f"bench{i:03d}", PASSWORD, random.Random(rng.random()))
            for i in range(args.bots)]
    try:
        phases = await run_phases(args, servers, bots, rng)
    finally:
        await asyncio.gather(*(b.http.aclose() for b in bots))
        for s in servers:
            s.stop()
    checked = audit(db, bots, args.overlap)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    restarts = phases.pop("restarts")
    return {
        "bots": args.bots, **phases,
        "lost": checked["lost"], "over_assigned": checked["over_assigned"], "kill_trials": len(restarts),
        "lost_after_kill": checked["lost_after_kill"], "acked_in_kill_phase": checked["acked_in_kill_phase"],
        "restart_s_mean": round(statistics.mean(restarts), 1) if restarts else None,
        "invariant_problems": checked["invariant_problems"],
        "synchronous": args.synchronous if engine == "sqlite" else None,
        "client_retries": sum(b.errors for b in bots),
        "client_failovers": sum(b.failovers for b in bots),
        "servers": len(servers),
        "engine": engine,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bots", type=int, default=50)
    parser.add_argument("--items", type=int, default=6000)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--human-seconds", type=float, default=40.0)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--flood-seconds", type=float, default=20.0,
                        help="phase 1b's length (0 skips it)")
    parser.add_argument("--flood-concurrency", type=int, default=8)
    parser.add_argument("--saturation-seconds", type=float, default=20.0)
    parser.add_argument("--kill-trials", type=int, default=3)
    parser.add_argument("--synchronous", default="NORMAL", choices=["NORMAL", "FULL"])
    parser.add_argument("--port", type=int, default=0, help="the first server's port (the others follow it)")
    parser.add_argument("--db", default="sqlite",
                        help="sqlite (a file, the default), postgres (a throwaway PostgreSQL cluster) or a "
                             "postgresql:// URL of a server to create the bench database on")
    parser.add_argument("--servers", type=int, default=1, help="app servers on the one database")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (database, server logs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    figures = asyncio.run(main_async(args))
    emit(figures)


if __name__ == "__main__":
    main()
