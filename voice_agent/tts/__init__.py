"""Speaking: answer tokens → speakable chunks → piper audio.

``Chunker`` cuts streamed answer text into chunks at clause and sentence ends and
normalises them for speech (``normalize``); ``PiperTts`` loads the voice once;
``TtsWorker`` synthesises chunks on its own thread and hands the audio to a sink
(``voice_agent.audio.sinks``). Nothing here knows about the language model.
"""
