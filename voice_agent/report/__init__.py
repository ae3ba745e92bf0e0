"""Latency metrics, a markdown summary and a timeline picture from a session trace.

``write_report(trace, out_dir)`` does all three; ``compute_metrics(header, events)`` gives
the figures alone (their definitions are in ``voice_agent.report.metrics``).
"""

from voice_agent.report.files import REPORT_FILES, BadTraceError, load_trace, write_report
from voice_agent.report.metrics import compute_metrics, is_noise_model
from voice_agent.report.turns import audio_clock_offset, audio_to_session

__all__ = [
    "REPORT_FILES", "BadTraceError", "audio_clock_offset", "audio_to_session",
    "compute_metrics", "is_noise_model", "load_trace", "write_report",
]
