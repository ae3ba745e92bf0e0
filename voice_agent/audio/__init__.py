"""Audio in and out: WAV I/O, sources, VAD and sinks. Knows nothing about the model."""

SAMPLE_RATE = 16_000  # every internal input stream is 16 kHz mono
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
