"""Training the embedded model to think: generated tasks, their encoding in the core's
layout, and the LoRA run behind `train-thinker`."""
