"""Scale-out benchmark: N concurrent sessions through Ray Serve with 1 replica, then with R.

For each replica count (``--replicas 1 2``) a local Ray cluster is started and ``serve
--ray``'s app deployed on it (``RayServer``, the command's own code). N clients at once
(``--sessions 2``) each stream one sample WAV (cycled) in real time as PCM16 at 24 kHz,
with silence after it, until its ``voice_agent.turn.metrics`` arrives; ``--rounds``
times. Figures per session come from the session's own trace: ``response_latency`` (end
of speech → first answer audio) and ``stall_total`` (silences between answer chunks).
Per replica: its resident memory once loaded (``GET /replica``) and its model load time;
per cluster: the machine's available memory before the cluster and after the replicas
loaded (Ray's own processes included).

With one replica the N sessions share one model worker thread; with R replicas each has
its own process and weights. On a machine with few cores the replicas compete for the
same cores, so the gain is bounded by the cores, not by Ray.

    python bench/scale.py [--llm embedded] [--replicas 1 2] [--sessions 2] [--rounds 2]

Last line: ``response latency R replicas/1 replica = X.XX at N=2`` (the anchor is the
1-replica run in the same invocation; below 1.00: more replicas answer sooner).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voice_agent.config import load_config  # noqa: E402
from voice_agent.runner import Models, voice_engine_defaults  # noqa: E402
from voice_agent.server import ServerSettings  # noqa: E402
from voice_agent.server.client import RealtimeClient, wav_pcm16  # noqa: E402
from voice_agent.server.ray_serve import RayServer, ScalePlan  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"
RATE = 24_000
PAD_S = 1.0


def mem_available_mb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return 0.0


def replicas_info(url: str, want: int, tries: int = 60) -> list[dict]:
    seen: dict[str, dict] = {}
    for _ in range(tries):
        with urllib.request.urlopen(url + "/replica", timeout=10) as r:
            info = json.loads(r.read())
        seen[info["replica"]] = info
        if len(seen) >= want:
            break
    return list(seen.values())


def one_round(ws: str, samples: list[Path]) -> tuple[list[dict], float]:
    async def one(wav: Path) -> dict:
        async with RealtimeClient(ws) as c:
            created = await c.wait_for("session.created", 60)
            await c.stream(wav_pcm16(wav, RATE, tail_s=PAD_S), RATE)
            silence = asyncio.create_task(c.stream(bytes(2 * RATE * 120), RATE))  # a live mic
            try:
                metrics = (await c.wait_for("voice_agent.turn.metrics", 240))["metrics"]
            finally:
                silence.cancel()
            return {"sample": wav.name, "replica": created["session"]["voice_agent"].get("replica"),
                    "response_latency": metrics.get("response_latency"),
                    "stall_total": metrics.get("stall_total")}

    async def main() -> list[dict]:
        return list(await asyncio.gather(*(one(w) for w in samples)))

    t0 = time.monotonic()
    rows = asyncio.run(main())
    return rows, time.monotonic() - t0


def median(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(vals), 4) if vals else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="embedded")
    ap.add_argument("--replicas", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--sessions", type=int, default=2, help="concurrent sessions per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-answer", type=int, default=48)
    args = ap.parse_args()
    samples = sorted(SAMPLES.glob("*.wav"))
    config = load_config(engine={**voice_engine_defaults(args.llm), "max_answer": args.max_answer})
    results: dict = {"llm": args.llm, "sessions": args.sessions, "rounds": args.rounds,
                     "max_answer": args.max_answer, "cpu_count": os.cpu_count(),
                     "loadavg_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        for r in args.replicas:
            before = mem_available_mb()
            t0 = time.monotonic()
            settings = ServerSettings(port=0, out=Path(tmp) / f"r{r}", write_report=False)
            plan = ScalePlan(replicas=r, cpus=1.0, max_sessions=args.sessions)
            with RayServer(settings, config, Models(args.llm), plan) as served:
                ready_s = time.monotonic() - t0
                info = replicas_info(served.url, r)
                after = mem_available_mb()
                rows, walls = [], []
                for k in range(args.rounds):
                    picked = [samples[(k * args.sessions + i) % len(samples)]
                              for i in range(args.sessions)]
                    got, wall = one_round(served.ws_url, picked)
                    rows += got
                    walls.append(round(wall, 2))
                    time.sleep(2.0)  # the round's sessions write their files
            part = {"replicas": r, "ready_s": round(ready_s, 1),
                    "replica_rss_mb": [i["rss_mb"] for i in info],
                    "replica_load_s": [i["load_s"] for i in info],
                    "cluster_mem_used_mb": round(before - after, 0),
                    "replicas_used_per_round": [len({x["replica"] for x in rows[k:k + args.sessions]})
                                                for k in range(0, len(rows), args.sessions)],
                    "round_wall_s": walls, "sessions_detail": rows,
                    "median_response_latency": median(rows, "response_latency"),
                    "median_stall_total": median(rows, "stall_total")}
            results[f"replicas_{r}"] = part
            print(json.dumps({f"replicas_{r}": part}), flush=True)
    results["loadavg_end"] = os.getloadavg()[0]
    summary = {k: {"median_response_latency": v["median_response_latency"],
                   "median_stall_total": v["median_stall_total"],
                   "replica_rss_mb": v["replica_rss_mb"]}
               for k, v in results.items() if isinstance(v, dict) and "replicas" in v}
    print(json.dumps({"summary": summary, "llm": args.llm, "cpu_count": os.cpu_count(),
                      "loadavg": [results["loadavg_start"], results["loadavg_end"]]}))
    base = results.get(f"replicas_{args.replicas[0]}", {}).get("median_response_latency")
    top = args.replicas[-1]
    most = results.get(f"replicas_{top}", {}).get("median_response_latency")
    if base and most:
        print(f"response latency {top} replicas/{args.replicas[0]} replica = {most / base:.2f} "
              f"at N={args.sessions}")
    else:
        print(f"response latency {top} replicas/{args.replicas[0]} replica = n/a at "
              f"N={args.sessions} (a run produced no answer audio)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
