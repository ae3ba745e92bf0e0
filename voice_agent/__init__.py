"""voice_agent: a real-time voice assistant that thinks while it listens and speaks."""

__version__ = "0.1.0"
