"""Server benchmark: N concurrent sessions over loopback vs the in-process replay.

One set of loaded models (one LLM copy, one whisper, one piper voice) serves both parts:

1. **in process** (the anchor): each sample WAV replayed in real time through
   ``run_session`` with the loaded models, one after the other, as ``replay`` does;
2. **server, N = 1, 2, 4**: ``serve``'s app on a loopback port; N clients at once, each
   streaming one sample (cycled) in real time as PCM16 at 24 kHz, with silence after it,
   until its ``voice_agent.turn.metrics`` arrives.

Figures per session come from the session's own trace (the same report code in both
parts): ``response_latency`` (end of speech → first answer audio) and ``stall_total``
(silences between answer chunks). For N > 1 the sessions share the one model thread
(``SharedModelWorker``), so the N = 4 row shows what sharing costs.

    python bench/server.py [--llm embedded] [--sessions 1 2 4] [--max-answer 48]

Last line: ``server/inprocess response latency = X.XX at N=1`` (1.00: the socket and the
shared worker cost nothing), with the N=4 figures in the JSON line above it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voice_agent.audio.sources import WavSource  # noqa: E402
from voice_agent.config import load_config  # noqa: E402
from voice_agent.runner import Models, run_session, voice_engine_defaults  # noqa: E402
from voice_agent.server import Limits, ServerSettings, create_app  # noqa: E402
from voice_agent.server.client import RealtimeClient, wav_pcm16  # noqa: E402
from voice_agent.server.host import ModelHost  # noqa: E402
from voice_agent.server.runserver import ServerThread  # noqa: E402
from voice_agent.trace import SessionClock  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"
RATE = 24_000
PAD_S = 1.0  # silence after each sample, in both parts (replay's default --pad)


def in_process(host: ModelHost, samples: list[Path], out: Path) -> list[dict]:
    rows = []
    for i, wav in enumerate(samples):
        decoder = host.worker.call(lambda: host.new_decoder(SessionClock())).result()
        result = run_session(
            source_factory=lambda clock, wav=wav: WavSource(wav, clock, realtime=True,
                                                            pad_silence_s=PAD_S),
            config=host.config, models=host.models, out_dir=out / f"inprocess-{i}",
            sink_kind="null", write_out_wav=False, decoder=decoder, whisper=host.whisper,
            tts=host.tts)
        rows.append(_figures(wav, result.metrics["turns"]))
    return rows


def over_server(port: int, samples: list[Path], n: int) -> list[dict]:
    async def one(wav: Path) -> dict:
        async with RealtimeClient(f"ws://127.0.0.1:{port}/v1/realtime") as c:
            await c.wait_for("session.created", 30)
            await c.stream(wav_pcm16(wav, RATE, tail_s=PAD_S), RATE)
            silence = asyncio.create_task(c.stream(bytes(2 * RATE * 120), RATE))  # a live mic
            try:
                metrics = await c.wait_for("voice_agent.turn.metrics", 180)
            finally:
                silence.cancel()
            return _figures(wav, [metrics["metrics"]])

    async def main() -> list[dict]:
        picked = [samples[i % len(samples)] for i in range(n)]
        return list(await asyncio.gather(*(one(w) for w in picked)))

    return asyncio.run(main())


def _wait_idle(app, timeout: float = 60.0) -> None:
    """Sessions of the previous round may still be writing their files."""
    import time

    deadline = time.monotonic() + timeout
    while app.state.sessions and time.monotonic() < deadline:
        time.sleep(0.1)


def _figures(wav: Path, turns: list[dict]) -> dict:
    t = next((t for t in turns if t.get("response_latency") is not None), turns[0] if turns else {})
    return {"sample": wav.name, "response_latency": t.get("response_latency"),
            "stall_total": t.get("stall_total"), "asr_final_latency": t.get("asr_final_latency")}


def _median(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(vals), 4) if vals else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="embedded")
    ap.add_argument("--sessions", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--samples", type=int, default=None, help="use only the first N samples")
    ap.add_argument("--max-answer", type=int, default=48,
                    help="answer tokens per turn (short answers keep the run short)")
    args = ap.parse_args()
    samples = sorted(SAMPLES.glob("*.wav"))[:args.samples]
    config = load_config(engine={**voice_engine_defaults(args.llm), "max_answer": args.max_answer})
    host = ModelHost(config, Models(args.llm))
    results: dict = {"llm": host.llm_name, "max_answer": args.max_answer,
                     "samples": [s.name for s in samples]}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = in_process(host, samples, Path(tmp))
            results["inprocess"] = {"sessions": rows, "median_response_latency": _median(rows, "response_latency"),
                                    "median_stall_total": _median(rows, "stall_total")}
            print(json.dumps({"inprocess": results["inprocess"]}), flush=True)
            settings = ServerSettings(out=Path(tmp) / "server", write_report=False,
                                      limits=dataclasses.replace(Limits(), max_sessions=max(args.sessions)))
            app = create_app(settings, host=host)
            with ServerThread(app, settings) as server:
                for n in args.sessions:
                    _wait_idle(app)
                    # N=1 replays every sample one at a time, like the anchor
                    rows = []
                    for wav in (samples if n == 1 else [None]):
                        _wait_idle(app)
                        rows += over_server(server.port, [wav] if wav else samples, n)
                    results[f"server_n{n}"] = {
                        "sessions": rows, "median_response_latency": _median(rows, "response_latency"),
                        "median_stall_total": _median(rows, "stall_total")}
                    print(json.dumps({f"server_n{n}": results[f"server_n{n}"]}), flush=True)
    finally:
        host.close()
    anchor = results["inprocess"]["median_response_latency"]
    n1 = results.get("server_n1", {}).get("median_response_latency")
    summary = {k: {"median_response_latency": v["median_response_latency"],
                   "median_stall_total": v["median_stall_total"]}
               for k, v in results.items() if isinstance(v, dict) and "sessions" in v}
    print(json.dumps({"summary": summary, "llm": results["llm"], "max_answer": args.max_answer}))
    if anchor and n1:
        print(f"server/inprocess response latency = {n1 / anchor:.2f} at N=1")
    else:
        print("server/inprocess response latency = n/a at N=1 (a part produced no answer audio)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
