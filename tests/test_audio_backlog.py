"""The backlog gate with scripted arrival times: a drained buffer is dropped, live audio
(with jitter and driver period bursts) passes whole."""

from __future__ import annotations

from voice_agent.audio.backlog import BacklogGate

BLOCK = 0.02


def _admit(gate: BacklogGate, times: list[float]) -> list[bool]:
    return [gate.admit(t, BLOCK) for t in times]


def test_a_buffer_drained_at_open_is_dropped_then_live_audio_passes():
    gate = BacklogGate()
    burst = [0.001 * i for i in range(200)]             # 4 s of old audio within 0.2 s
    live = [0.2 + BLOCK * (i + 1) for i in range(100)]  # then 2 s at the pace of time
    kept = _admit(gate, burst + live)
    assert sum(kept[:200]) * BLOCK <= gate.start_credit_s + 1e-9
    assert gate.dropped_s >= 3.8
    assert all(kept[200:])


def test_live_audio_with_jitter_and_period_bursts_is_never_dropped():
    gate = BacklogGate()
    times, t = [], 0.0
    for period in range(500):  # 10 minutes... of 100 ms periods delivered 5 blocks at once
        t += 0.1 + (0.004 if period % 2 else -0.004)
        times += [t + 0.0001 * k for k in range(5)]
    assert all(_admit(gate, times))
    assert gate.dropped_s == 0.0


def test_a_device_clock_slightly_fast_is_not_a_backlog():
    gate = BacklogGate()
    times = [i * BLOCK * 0.995 for i in range(30_000)]  # 0.5 % fast, 10 minutes
    assert all(_admit(gate, times))


def test_a_stall_then_a_dump_drops_the_stale_part_only():
    gate = BacklogGate()
    live = [BLOCK * (i + 1) for i in range(50)]
    dump = [1.0 + 2.0 + 0.0005 * i for i in range(100)]  # stalled 2 s, then 2 s at once
    after = [3.05 + BLOCK * (i + 1) for i in range(50)]
    kept = _admit(gate, live + dump + after)
    assert all(kept[:50]) and all(kept[150:])
    assert 1.0 < gate.dropped_s < 2.0  # the credit covers part of the gap; the rest is stale
