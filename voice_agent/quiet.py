"""Third-party output that a user cannot act on, silenced where it arises (never globally).

transformers draws a progress bar for every checkpoint it loads or writes ("Loading
weights", "Writing model shards", the GGUF de-quantisation). A session loads its model
in about a second, and the one slow case (the first GGUF conversion) prints its own line,
so the bars only push the live transcript off the screen. ``quiet_loading()`` turns them
off for the calls inside it and restores the previous setting after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_loading() -> Iterator[None]:
    """No transformers progress bars inside the block; the caller's setting comes back."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()
