"""Expected failures. The CLI prints their message as one line and exits non-zero."""


class VoiceAgentError(Exception):
    """A failure the user can act on: bad input, a missing model or device."""

    exit_code = 2


class AudioInputError(VoiceAgentError):
    """An input file or device that cannot be read as audio."""


class ModelError(VoiceAgentError):
    """A model that cannot be resolved, verified or loaded."""


class DeviceError(VoiceAgentError):
    """A missing audio device or PortAudio library."""
