"""End-of-turn benchmark: the Smart Turn model against the fixed VAD hangover.

Every clip is one question (one turn), replayed in real time through the Listener (VAD,
turn policy, streaming ASR on its thread): the piper samples (assets/samples) and the
held-out espeak-ng clips (assets/turns: other voices, several speeds, some with noise,
and a *pause* set with a 600–800 ms pause where the sentence is unfinished). For each
setting it reports, over all clips:

- end of speech → final: from the moment the last voiced audio of the question was
  delivered to its ``asr.final`` (median and max); the question's last utterance counts;
- false turn ends: clips whose words arrived in more than one final (the turn ended
  inside the question), as a rate over all clips and over the pause set, and counted on
  the held-out pause set and the list set. A final with
  no words (noise opened the VAD before the question; the session ends such a turn as
  "nothing heard" and does not answer) is counted apart, as ``noise_utterances``;
- held: clips where the transcript check (``vad.turn_text``) kept listening after the
  model said complete, with the reason (on a complete question that is a cost: it
  waits for the limit).

    python bench/turns.py [--settings model hangover] [--clips NAME ...] [--sim]
                          [--set asr.KEY=VALUE ...]

``--sim`` replays on a ``SimClock`` with the recogniser inline: compute takes no
simulated time, so the latency is the policy's own floor (what it decides from the audio
heard), independent of the machine's load; the model's and the decoder's compute times
are reported beside it, measured as they ran.

Prints one JSON object per setting, a JSON summary, and last the line
``final_latency turn_model/hangover = X.XX`` (median end of speech → final with the model
over the same with the fixed 300 ms hangover, both measured in this run; below 1: sooner).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voice_agent.asr import AsrConfig, ListenConfig, Listener, load_whisper  # noqa: E402
from voice_agent.asr.text_turn import TextTurnModel, load_text_turn_model  # noqa: E402
from voice_agent.asr.transcript import TranscriptCollector, run_listener  # noqa: E402
from voice_agent.asr.wer import word_error_rate  # noqa: E402
from voice_agent.audio.smart_turn import SmartTurn  # noqa: E402
from voice_agent.audio.sources import SimClock, WavSource  # noqa: E402
from voice_agent.audio.vad import VadConfig  # noqa: E402
from voice_agent.config import load_config  # noqa: E402
from voice_agent.errors import VoiceAgentError  # noqa: E402
from voice_agent.events import TurnDecision  # noqa: E402
from voice_agent.trace import SessionClock  # noqa: E402

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SETTINGS = {
    # the defaults: ask once per pause, an unsure "complete" waits longer, the words are
    # checked, then the limit
    "model": VadConfig(),
    "model_audio_only": VadConfig(turn_text=False, turn_unsure_margin=0.0),  # the verdict alone
    "model_no_unsure": VadConfig(turn_unsure_margin=0.0),  # the words checked, no unsure wait
    "model_recheck": VadConfig(turn_recheck_ms=500),  # ask again every 500 ms of silence
    "model_no_question": VadConfig(turn_question_ms=0),  # a question mark does not overrule "incomplete"
    "model_question_500": VadConfig(turn_question_ms=500),  # ... after 500 ms (the default is 1 s)
    # a chat model reads the words too (the plain embedded SmolLM2: asr/text_turn.py)
    "model_text_lm": VadConfig(turn_text_model="embedded"),
    "model_no_open_list": VadConfig(turn_open_list=False),  # lists read by punctuation alone
    "hangover": VadConfig(turn_model="none"),
}
_TEXT_MODELS: dict[str, TextTurnModel | None] = {}  # loaded once, shared by every clip


def text_turn_model(vad: VadConfig) -> TextTurnModel | None:
    name = vad.turn_text_model
    if name.lower() == "none":
        return None
    if name not in _TEXT_MODELS:
        _TEXT_MODELS[name] = load_text_turn_model(name)
    return _TEXT_MODELS[name]


def clips() -> list[dict]:
    """name, path, reference text, set (samples | complete | pause, the held-out
    heldout_complete | heldout_pause: voices and sentences nothing was tuned on, and
    list_pause | list_complete: lists said with pauses between items, and finished turns
    that end on a comma and a noun phrase)."""
    out = []
    samples = json.loads((ASSETS / "samples" / "transcripts.json").read_text())
    for name, text in samples.items():
        out.append({"name": name, "path": ASSETS / "samples" / name, "text": text, "set": "samples"})
    for folder, prefix in ((ASSETS / "turns", ""), (ASSETS / "turns" / "heldout", "heldout_"),
                           (ASSETS / "turns" / "lists", "list_")):
        for name, meta in json.loads((folder / "turns.json").read_text()).items():
            out.append({"name": name, "path": folder / name, "text": meta["text"],
                        "set": prefix + ("pause" if meta["pause_s"] else "complete")})
    return out


def replay_sim(whisper, turn_model, path: Path, config: ListenConfig) -> TranscriptCollector:
    """Inline on a SimClock: frames are "delivered" at their audio end time."""
    clock = SimClock()
    collector = TranscriptCollector()
    listener = Listener(whisper, clock, config, turn_model=turn_model, threaded=False,
                        emit=collector.on_event, text_turn_model=text_turn_model(config.vad))
    longest = max(config.vad.hangover_ms, config.vad.turn_limit_ms) / 1000
    for frame in WavSource(path, clock, realtime=False, pad_silence_s=longest + 0.3):
        collector.on_frame(frame)
        listener.feed(frame)
    listener.end_of_input()
    listener.close()
    collector.decode_s = list(listener.stats.decode_s)
    return collector


async def replay(whisper, turn_model, path: Path, config: ListenConfig) -> TranscriptCollector:
    loop = asyncio.get_running_loop()
    clock = SessionClock()
    collector = TranscriptCollector()
    listener = Listener(whisper, clock, config, turn_model=turn_model,
                        emit=lambda ev: loop.call_soon_threadsafe(collector.on_event, ev),
                        text_turn_model=text_turn_model(config.vad))
    listener.warm_up()
    longest = max(config.vad.hangover_ms, config.vad.turn_limit_ms) / 1000
    source = WavSource(path, clock, realtime=True, pad_silence_s=longest + 0.3)
    clock.start = SessionClock().start
    try:
        await run_listener(source, listener, collector)
    finally:
        listener.close()
    collector.decode_s = list(listener.stats.decode_s)
    return collector


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def run_setting(whisper, turn_model, label: str, vad: VadConfig, items: list[dict],
                sim: bool = False, asr: AsrConfig = AsrConfig()) -> dict:
    config = ListenConfig(vad=vad, asr=asr)
    rows, decode_s = [], []
    for item in items:
        if sim:
            collector = replay_sim(whisper, turn_model, item["path"], config)
        else:
            collector = asyncio.run(replay(whisper, turn_model, item["path"], config))
        decode_s += collector.decode_s
        done = [u for u in collector.utterances if u.final_t is not None]
        worded = [u for u in done if u.text.strip()]
        last = worded[-1] if worded else (done[-1] if done else None)
        decisions = [e for e in collector.events if isinstance(e, TurnDecision)]
        rows.append({
            "clip": item["name"], "set": item["set"], "utterances": len(worded),
            "noise_utterances": len(done) - len(worded),
            "finals": [u.text for u in worded],
            "held": [f"p={d.probability} {d.reason}" for d in decisions if d.by == "text"],
            "final_latency_s": last.final_latency_s if last else None,
            "ended_by": decisions[-1].by if decisions else "end of input",
            "p_end": decisions[-1].probability if decisions else None,
            "model_ms": [d.ms for d in decisions if d.by == "model"],
            "decodes": len(collector.decode_s),
            "wer": round(word_error_rate(item["text"], " ".join(u.text for u in done)), 3),
        })
        print(json.dumps({"setting": label, **rows[-1]}), file=sys.stderr, flush=True)
    lat = [r["final_latency_s"] for r in rows if r["final_latency_s"] is not None]
    split = [r for r in rows if r["utterances"] > 1]
    pause = [r for r in rows if r["set"] == "pause"]
    heldout_pause = [r for r in rows if r["set"] == "heldout_pause"]
    list_pause = [r for r in rows if r["set"] == "list_pause"]
    complete = [r for r in rows if not r["set"].endswith("pause")]
    model_ms = [m for r in rows for m in r["model_ms"]]
    return {
        "setting": label,
        "vad": {k: getattr(vad, k) for k in ("turn_model", "turn_pause_ms", "turn_limit_ms",
                                             "turn_threshold", "turn_recheck_ms", "turn_text",
                                             "turn_question_ms", "turn_text_model",
                                             "hangover_ms")},
        "clips": len(rows),
        "median_final_latency_s": round(statistics.median(lat), 3) if lat else None,
        "max_final_latency_s": round(max(lat), 3) if lat else None,
        "false_turn_end_rate": round(len(split) / len(rows), 3),
        "false_turn_end_rate_pause_set": round(sum(r["utterances"] > 1 for r in pause) / len(pause), 3)
        if pause else None,
        "false_turn_ends_heldout_pause_set": f"{sum(r['utterances'] > 1 for r in heldout_pause)}"
                                             f"/{len(heldout_pause)}",
        "false_turn_ends_list_set": f"{sum(r['utterances'] > 1 for r in list_pause)}"
                                    f"/{len(list_pause)}",
        "median_final_latency_list_complete_s": _median(
            [r["final_latency_s"] for r in rows if r["set"] == "list_complete"]),
        "held_complete_clips": [r["clip"] for r in complete if r["held"]],
        "median_final_latency_complete_s": _median([r["final_latency_s"] for r in complete]),
        "split_clips": [r["clip"] for r in split],
        "held_clips": [r["clip"] for r in rows if r["held"]],
        "noise_utterances": sum(r["noise_utterances"] for r in rows),
        "ended_by_limit": [r["clip"] for r in rows if r["ended_by"] == "limit"],
        "median_model_ms": round(statistics.median(model_ms), 1) if model_ms else None,
        "median_decode_ms": round(1000 * statistics.median(decode_s), 1) if decode_s else None,
        "decodes": len(decode_s),  # every decode that ran (a pause's pass that speech went on after too)
        "mean_wer": round(statistics.mean(r["wer"] for r in rows), 3),
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    ap.add_argument("--clips", nargs="+", help="clip names (default: all)")
    ap.add_argument("--turn-pause-ms", type=int, help="short pause for the model settings")
    ap.add_argument("--sim", action="store_true",
                    help="SimClock, recogniser inline: the policy's latency floor, load-free")
    ap.add_argument("--set", action="append", default=[], metavar="asr.KEY=VALUE",
                    help="a recogniser setting for every run (e.g. asr.final_context_s=0)")
    args = ap.parse_args()
    try:
        asr = load_config(None, args.set).asr
    except VoiceAgentError as e:
        sys.exit(f"bench/turns.py: {e}")
    items = [c for c in clips() if not args.clips or c["name"] in args.clips]
    whisper = load_whisper()
    turn_model = SmartTurn.load()
    results = {}
    for label in dict.fromkeys(args.settings + ["model", "hangover"]):
        vad = SETTINGS[label]
        if args.turn_pause_ms and vad.turn_model != "none":
            vad = replace(vad, turn_pause_ms=args.turn_pause_ms)
        results[label] = r = run_setting(whisper, turn_model, label, vad, items, args.sim, asr)
        print(json.dumps({k: v for k, v in r.items() if k != "rows"}), flush=True)
    model, hangover = results["model"], results["hangover"]
    summary = {
        "clock": "sim (compute takes no time)" if args.sim else "real time",
        "asr_settings": args.set,
        "median_final_latency_s": {k: r["median_final_latency_s"] for k, r in results.items()},
        "max_final_latency_s": {k: r["max_final_latency_s"] for k, r in results.items()},
        "false_turn_end_rate": {k: r["false_turn_end_rate"] for k, r in results.items()},
        "false_turn_end_rate_pause_set": {k: r["false_turn_end_rate_pause_set"]
                                          for k, r in results.items()},
        "false_turn_ends_heldout_pause_set": {k: r["false_turn_ends_heldout_pause_set"]
                                              for k, r in results.items()},
        "false_turn_ends_list_set": {k: r["false_turn_ends_list_set"] for k, r in results.items()},
        "median_final_latency_list_complete_s": {k: r["median_final_latency_list_complete_s"]
                                                 for k, r in results.items()},
        "held_complete_clips": {k: r["held_complete_clips"] for k, r in results.items()},
        "targets": {
            "median_final_latency_le_0.35s": (model["median_final_latency_s"] or 9) <= 0.35,
            "no_false_turn_end_on_pause_set": model["false_turn_end_rate_pause_set"] == 0,
        },
    }
    print(json.dumps(summary))
    ratio = model["median_final_latency_s"] / hangover["median_final_latency_s"]
    print(f"final_latency turn_model/hangover = {ratio:.2f}")


if __name__ == "__main__":
    main()
