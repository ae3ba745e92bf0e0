"""Serving: a WebSocket API with the OpenAI Realtime event vocabulary plus thought events,
and a browser page (the remote microphone). See docs/protocol.md.

``create_app(settings, host=ModelHost(config, models))`` builds the ASGI app; the
``serve`` command runs it with uvicorn.
"""

from voice_agent.server.app import create_app
from voice_agent.server.settings import Limits, ServerSettings

__all__ = ["create_app", "Limits", "ServerSettings"]
