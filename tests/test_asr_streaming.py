"""Streaming ASR end to end with the embedded faster-whisper model.

Most runs use a ``SimClock`` with the recogniser inline: audio time drives the clock and a
decode takes no simulated time. That makes them deterministic; it measures what the
policy commits given the audio heard so far (a lower bound on lag, like
whisper_streaming's --comp_unaware). One test replays in real time with the ASR thread.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voice_agent.asr import AsrConfig, ListenConfig, Listener, load_whisper
from voice_agent.asr.transcript import TranscriptCollector, run_listener
from voice_agent.asr.wer import word_error_rate
from voice_agent.audio.sources import SimClock, WavSource
from voice_agent.audio.vad import VadConfig
from voice_agent.audio.wav import read_wav, resample, to_int16
from voice_agent.events import AsrCommit, AsrFinal, AsrPartial, AudioIn, VadEnd, VadStart
from voice_agent.trace import SessionClock


@pytest.fixture(scope="session")
def whisper_model():
    """One loaded model for every test in the session (load_whisper caches it)."""
    return load_whisper()


def stream_inline(model, source_factory, config: ListenConfig = ListenConfig()):
    """Run a source through an inline Listener on a SimClock; return (events, listener)."""
    clock = SimClock()
    events: list = []
    listener = Listener(model, clock, config, emit=events.append, threaded=False)
    for frame in source_factory(clock):
        listener.feed(frame)
    listener.end_of_input()
    return events, listener


def finals(events) -> list[AsrFinal]:
    return [e for e in events if isinstance(e, AsrFinal)]


def utterances(events) -> list[list]:
    """Events grouped from each VadStart to its AsrFinal."""
    groups, cur = [], None
    for e in events:
        if isinstance(e, VadStart):
            cur = []
        if cur is not None:
            cur.append(e)
        if isinstance(e, AsrFinal):
            groups.append(cur)
            cur = None
    return groups


@pytest.fixture(scope="module")
def streamed(whisper_model, sample_paths):
    return {p.name: stream_inline(whisper_model, lambda c, p=p: WavSource(p, c, pad_silence_s=0.8))
            for p in sample_paths}


def test_final_transcripts_have_low_wer(streamed, sample_transcripts):
    errors = words = 0
    for name, (events, _) in streamed.items():
        text = " ".join(f.text for f in finals(events))
        ref = sample_transcripts[name]
        wer = word_error_rate(ref, text)
        assert wer <= 0.2, (name, text)
        n = len(ref.split())
        errors, words = errors + wer * n, words + n
    assert errors / words <= 0.10


def test_commits_are_append_only_and_spell_the_final(streamed):
    for name, (events, _) in streamed.items():
        for group in utterances(events):
            commits = [e for e in group if isinstance(e, AsrCommit)]
            final = group[-1]
            assert commits and all(c.text for c in commits), name
            if not final.revised:  # (a revised final is a whole decode's: test_asr_policy)
                assert "".join(c.text for c in commits) == final.text, name
            times = [w[1] for c in commits for w in c.words]
            assert times == sorted(times), name  # word times only move forward
            stamps = [c.t for c in commits]
            assert stamps == sorted(stamps) and final.t >= stamps[-1]


def test_commits_arrive_before_long_speech_ends(streamed):
    long_ones = 0
    for name, (events, _) in streamed.items():
        for group in utterances(events):
            start, final = group[0], group[-1]
            if final.speech_end - start.audio_t < 3.0:
                continue
            long_ones += 1
            early = [c for c in group if isinstance(c, AsrCommit) and c.t < final.speech_end]
            # SimClock: t is the audio time delivered, so these were committed mid-speech.
            assert len(early) >= 2, (name, [(c.t, c.text) for c in group if isinstance(c, AsrCommit)])
    assert long_ones >= 1


def test_final_reuses_the_speculative_pass_at_the_vad_end(streamed):
    for name, (events, listener) in streamed.items():
        ends = [e for e in events if isinstance(e, VadEnd)]
        assert [f.t for f in finals(events)] == [e.t for e in ends], name
        assert [f.speech_end for f in finals(events)] == [e.audio_t for e in ends]
        assert listener.stats.final_reused == listener.stats.finals == len(ends)


def on_interval_grid(buffer_s: list[float], interval: float) -> list[bool]:
    return [abs(b / interval - round(b / interval)) < 1e-6 for b in buffer_s]


def test_speculation_decodes_at_the_first_silent_frame(whisper_model, sample_paths):
    source = lambda c: WavSource(sample_paths[0], c, pad_silence_s=0.8)  # noqa: E731
    off = ListenConfig(asr=AsrConfig(speculative_final=False))
    events, plain = stream_inline(whisper_model, source, off)
    # Without it, updates come only every interval_s of audio (plus a final pass if the
    # last update did not already cover the end of speech).
    grid = on_interval_grid(plain.stats.buffer_s, 0.5)
    assert all(grid[: plain.stats.decodes - (plain.stats.finals - plain.stats.final_reused)])
    assert word_error_rate("What is the capital of France?", finals(events)[0].text) <= 0.2  # see test_asr_cli
    events, spec = stream_inline(whisper_model, source)
    assert not all(on_interval_grid(spec.stats.buffer_s, 0.5))  # an off-grid, early pass
    assert spec.stats.final_reused == spec.stats.finals == 1


def test_partials_are_tentative_tails(streamed):
    for name, (events, _) in streamed.items():
        partials = [e for e in events if isinstance(e, AsrPartial)]
        assert partials, name
        assert all(not p.text.startswith(" ") for p in partials)


def test_44k_stereo_input_works(whisper_model, sample_paths, tmp_path: Path):
    mono = read_wav(sample_paths[0])
    up = resample(mono, 16000, 44100)
    path = tmp_path / "stereo44k.wav"
    sf.write(path, np.stack([up, 0.8 * up], axis=1), 44100, subtype="PCM_16")
    assert sf.info(path).channels == 2 and sf.info(path).samplerate == 44100
    events, _ = stream_inline(whisper_model, lambda c: WavSource(path, c, pad_silence_s=0.8))
    text = " ".join(f.text for f in finals(events))
    assert word_error_rate("What is the capital of France?", text) <= 0.2, text  # see test_asr_cli


def test_speech_free_input_gives_no_utterance_and_no_work(whisper_model):
    rng = np.random.default_rng(0)
    noise = to_int16(rng.normal(0, 1e-3, 4 * 16000).astype(np.float32))
    events, listener = stream_inline(whisper_model, lambda c: WavSource.from_pcm(noise, c))
    assert all(isinstance(e, AudioIn) for e in events) and len(events) == 4
    assert listener.stats.decodes == 0


def test_no_decode_when_no_new_audio_arrived(whisper_model, sample_paths):
    clock, events = SimClock(), []
    listener = Listener(whisper_model, clock, emit=events.append, threaded=False)
    for frame in WavSource(sample_paths[0], clock, pad_silence_s=3.0):
        listener.feed(frame)
    decodes = listener.stats.decodes
    assert finals(events) and decodes <= 3.5 / 0.5 + 2  # at most one per interval (+ spec, final)
    for frame in WavSource.from_pcm(np.zeros(3 * 16000, np.int16), clock):
        listener.feed(frame)  # silence after the utterance: nothing to decode
    assert listener.stats.decodes == decodes


def test_realtime_replay_on_the_asr_thread(whisper_model, sample_paths):
    """Real clock, real thread: commits come while speech goes on; final soon after it ends."""
    path = next(p for p in sample_paths if p.name == "train_arrival.wav")
    # one utterance of ~4 s: the fixed hangover bridges its comma pause (the turn model
    # judges "…ninety minutes," complete after 200 ms; see tests/test_turn.py)
    config = ListenConfig(vad=VadConfig(hangover_ms=600, turn_model="none"))

    async def go():
        loop = asyncio.get_running_loop()
        clock = SessionClock()
        collector = TranscriptCollector()
        listener = Listener(whisper_model, clock, config,
                            emit=lambda ev: loop.call_soon_threadsafe(collector.on_event, ev))
        listener.warm_up()
        try:
            await run_listener(WavSource(path, clock, realtime=True, pad_silence_s=0.8),
                               listener, collector)
        finally:
            listener.close()
        return collector

    collector = asyncio.run(go())
    (utt,) = [u for u in collector.utterances if u.final_t is not None]
    assert utt.speech_end_s - utt.speech_start_s >= 3.0
    spoken_end = collector.delivered_at(utt.speech_end_s)
    early = [e for e in collector.events if isinstance(e, AsrCommit) and e.t < spoken_end]
    assert early, [(e.t, e.text) for e in collector.events if isinstance(e, AsrCommit)]
    assert utt.final_latency_s is not None and utt.final_latency_s < 0.6 + 1.0  # hangover + slack
    assert word_error_rate("If a train leaves at three o'clock and travels for ninety minutes, "
                           "when does it arrive?", utt.text) <= 0.1, utt.text


def test_threaded_fast_replay_keeps_every_utterance(whisper_model, sample_paths, sample_transcripts):
    """Fed faster than it decodes, the thread sees a VAD end and the next start in one
    batch of commands: the first utterance's final must still come, in order."""
    path = next(p for p in sample_paths if p.name == "train_arrival.wav")

    async def go():
        loop = asyncio.get_running_loop()
        collector = TranscriptCollector()
        # the fixed hangover splits this sample at its comma (the turn model may not)
        listener = Listener(whisper_model, SessionClock(), ListenConfig(vad=VadConfig(turn_model="none")),
                            emit=lambda ev: loop.call_soon_threadsafe(collector.on_event, ev))
        try:
            await run_listener(WavSource(path, SessionClock(), realtime=False, pad_silence_s=0.8),
                               listener, collector)
        finally:
            listener.close()
        return collector

    collector = asyncio.run(go())
    starts = [e for e in collector.events if isinstance(e, VadStart)]
    done = finals(collector.events)
    assert len(starts) == len(done) >= 2  # this sample has a pause longer than the hangover
    assert [f.speech_end for f in done] == sorted(f.speech_end for f in done)
    text = " ".join(f.text for f in done)
    assert word_error_rate(sample_transcripts[path.name], text) <= 0.1, text


def concatenated_speech(sample_paths, seconds: float) -> np.ndarray:
    """Samples without their edge silences, 0.25 s apart, repeated to ``seconds``."""
    pieces = []
    for p in sample_paths:
        a = read_wav(p)
        voiced = np.nonzero(np.abs(a) > 0.02)[0]
        pieces += [a[voiced[0]: voiced[-1]], np.zeros(int(0.25 * 16000), np.float32)]
    one = np.concatenate(pieces)
    return to_int16(np.tile(one, int(np.ceil(seconds * 16000 / len(one))))[: int(seconds * 16000)])


@pytest.mark.heavy
def test_two_minutes_of_speech_stream_with_bounded_buffer_and_update_time(whisper_model, sample_paths):
    pcm = concatenated_speech(sample_paths, 120.0)
    # A long hangover keeps it one utterance, so only trimming can bound the buffer. A 1.5 s
    # interval without speculative passes keeps the test near 40 s on two shared cores.
    asr = AsrConfig(interval_s=1.5, speculative_final=False)
    config = ListenConfig(vad=VadConfig(hangover_ms=1500, turn_model="none"), asr=asr)
    events, listener = stream_inline(
        whisper_model, lambda c: WavSource.from_pcm(pcm, c, pad_silence_s=2.0), config)
    st = listener.stats
    assert len([e for e in events if isinstance(e, VadStart)]) == 1
    assert st.max_buffer_s <= asr.max_buffer_s + asr.interval_s + 0.5
    assert st.decodes <= 122 / asr.interval_s + 2  # one per interval: no work on old audio
    third = len(st.decode_s) // 3
    early, late = np.median(st.decode_s[:third]), np.median(st.decode_s[-third:])
    assert late <= 2.0 * early + 0.15, (early, late)  # no growth with the length of speech
    text = finals(events)[0].text
    commits = "".join(e.text for e in events if isinstance(e, AsrCommit))
    assert commits == text
    assert 300 <= len(text.split()) <= 450  # ~4 questions of ~10 words, 120 s worth, none lost



def _voiced_end(pcm: np.ndarray) -> float:
    """The audio time where the VAD says the voiced audio of a one-utterance clip ends."""
    from voice_agent.audio.frames import AudioFrame
    from voice_agent.audio.vad import Vad

    vad, speech_end = Vad(VadConfig()), None
    for i in range(0, len(pcm) - 320, 320):
        for d in vad.process(AudioFrame(t=0.0, audio_t=i / 16000, pcm=pcm[i:i + 320])):
            if isinstance(d, VadEnd):
                speech_end = d.audio_t
    assert speech_end is not None
    return speech_end


def test_a_final_needs_a_hypothesis_that_heard_past_the_voiced_end(whisper_model):
    """The VAD ends speech before soft unvoiced endings. A pass that stopped one frame
    after the voiced end must not be reused as the final: the final decodes the tail."""
    from voice_agent.asr.utterance import UtteranceRecognizer
    from voice_agent.asr.whisper import WhisperDecoder

    path = Path(__file__).resolve().parent.parent / "assets" / "samples" / "capital_of_france.wav"
    pcm = to_int16(read_wav(path))
    speech_end = _voiced_end(pcm)
    cfg = AsrConfig(final_tail_s=0.15)
    events = []
    rec = UtteranceRecognizer(WhisperDecoder(whisper_model, cfg), SimClock(), cfg, events.append)
    rec.begin(0.0, pcm[:int(round((speech_end + 0.02) * 16000))])
    rec.update()  # a pass that heard just past the voiced end, as at the first silent frame
    rec.append(pcm[int(round((speech_end + 0.02) * 16000)):])
    text = rec.finish(speech_end)
    assert rec.stats.final_reused == 0
    assert word_error_rate("What is the capital of France?", text) == 0.0


def test_no_update_starts_while_a_pause_waits_for_its_tail(whisper_model):
    """At a pause the next decode is the speculative pass over the tail, which the final
    reuses. An update falling due between the pause and the tail's arrival would hold the
    ASR thread when the tail comes (in real time the final then waits for two decodes),
    so none starts; if speech resumes first, updates go on as before."""
    from voice_agent.asr.streaming import StreamingAsr
    from voice_agent.asr.whisper import WhisperDecoder

    path = Path(__file__).resolve().parent.parent / "assets" / "samples" / "capital_of_france.wav"
    pcm = to_int16(read_wav(path))
    cfg = AsrConfig(interval_s=0.5, final_tail_s=0.15, speculate_after_s=0.15)  # no padding
    asr = StreamingAsr(WhisperDecoder(whisper_model, cfg), SimClock(), cfg, lambda e: None,
                       threaded=False)
    at = lambda s: int(round(s * 16000))  # noqa: E731
    asr.begin(0.0, pcm[:at(0.45)])
    assert asr.stats.decodes == 0                    # 0.45 s heard: no update due yet
    asr.pause(0.45)                                  # first silent frame
    asr.push(pcm[at(0.45):at(0.55)])                 # an update is due (0.55 s) ...
    assert asr.stats.decodes == 0                    # ... but the pause's tail is not here
    asr.push(pcm[at(0.55):at(0.60)])                 # the tail has arrived: the pass runs
    assert asr.stats.decodes == 1 and asr.stats.buffer_s[-1] >= 0.60 - 1e-9
    asr.push(pcm[at(0.60):at(1.20)])                 # more silence, 0.6 s past the pass:
    assert asr.stats.decodes == 1                    # no update decodes it (the final would
    # wait behind one started just before the turn ends; spoken runs saw 0.2-0.35 s)
    asr.resume()                                     # speech went on: updates as usual
    asr.push(pcm[at(1.20):at(1.30)])
    assert asr.stats.decodes == 2
    asr.close()


def test_the_pause_pass_starts_early_and_hears_the_rest_of_the_tail_as_silence(whisper_model):
    """With speculate_after_s below final_tail_s the pass starts after that much silence,
    decodes the buffer padded with silence to the tail's end, and counts as having heard
    it: the final reuses it, and a soft ending still reads right ("France", where the
    audio cut 100 ms past the voiced end with no padding reads "friends")."""
    from voice_agent.asr.streaming import StreamingAsr
    from voice_agent.asr.whisper import WhisperDecoder
    from voice_agent.events import AsrFinal

    path = Path(__file__).resolve().parent.parent / "assets" / "samples" / "capital_of_france.wav"
    pcm = to_int16(read_wav(path))
    speech_end = _voiced_end(pcm)
    cfg = AsrConfig(final_tail_s=0.15, speculate_after_s=0.04)
    events: list = []
    passes: list = []  # what the pass hands on as soon as it has it (a text model reads it)
    asr = StreamingAsr(WhisperDecoder(whisper_model, cfg), SimClock(), cfg, events.append,
                       threaded=False, on_pass=passes.append)
    at = lambda s: int(round(s * 16000))  # noqa: E731
    asr.begin(0.0, pcm[:at(speech_end + 0.02)])
    decodes = asr.stats.decodes
    asr.pause(speech_end)
    assert asr.stats.decodes == decodes              # 20 ms of silence: not yet
    assert passes == []                              # (the updates before were no pass)
    asr.push(pcm[at(speech_end + 0.02):at(speech_end + 0.04)])
    assert asr.stats.decodes == decodes + 1          # 40 ms: the pass runs, padded
    assert passes == [asr.heard]                     # ... and hands on what it heard
    assert asr.stats.buffer_s[-1] == pytest.approx(speech_end + 0.15, abs=1e-3)
    assert asr.heard.until == pytest.approx(speech_end + 0.15, abs=1e-3)
    asr.push(pcm[at(speech_end + 0.04):at(speech_end + 0.3)])
    asr.end(speech_end)
    assert asr.stats.decodes == decodes + 1 and asr.stats.final_reused == 1
    final = [e for e in events if isinstance(e, AsrFinal)][-1]
    assert word_error_rate("What is the capital of France?", final.text) == 0.0
    asr.close()


def test_the_decodes_that_make_the_final_search_with_the_final_beam(whisper_model, sample_paths,
                                                                    monkeypatch):
    """asr.final_beam_size: a pause's pass and the end's decode search wider; the updates
    stay greedy. CTranslate2 gives no step logits for a beam search, so the decoder scores
    the beam's last token with one forced greedy step: where both read the same tokens, the
    probability the sure-"?" rule reads is greedy's own."""
    from voice_agent.asr.whisper import WhisperDecoder

    beams: list[int | None] = []
    decode = WhisperDecoder.decode

    def spy(self, audio, prompt="", beam_size=None):
        beams.append(beam_size)
        return decode(self, audio, prompt, beam_size)

    monkeypatch.setattr(WhisperDecoder, "decode", spy)
    source = lambda c: WavSource(sample_paths[0], c, pad_silence_s=0.8)  # noqa: E731
    events, listener = stream_inline(whisper_model, source,
                                     ListenConfig(asr=AsrConfig(final_beam_size=3)))
    assert word_error_rate("What is the capital of France?", finals(events)[0].text) <= 0.2
    assert listener.stats.final_reused == 1 and beams[-1] == 3  # the pause's pass
    assert beams.count(3) == 1 and set(beams[:-1]) == {None}

    monkeypatch.setattr(WhisperDecoder, "decode", decode)
    dec = WhisperDecoder(whisper_model, AsrConfig())
    audio = read_wav(sample_paths[0])
    greedy, wide = dec.decode(audio), dec.decode(audio, beam_size=3)
    assert wide.tokens == greedy.tokens and greedy.last_prob > 0.5
    assert wide.last_prob == pytest.approx(greedy.last_prob, abs=1e-4)
