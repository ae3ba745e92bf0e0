"""FlyThinker: a latent reasoner fused into the speaking model (arXiv 2512.06690).

``FusedPair`` is the pair and its parallel training pass; ``PairDecoder`` decodes it step
by step with the reasoner one step behind, concurrently with the generator.
"""

from voice_agent.core.flythinker.decode import PairDecoder
from voice_agent.core.flythinker.fusion import DEFAULT_LAMBDA, FusedPair

__all__ = ["DEFAULT_LAMBDA", "FusedPair", "PairDecoder"]
