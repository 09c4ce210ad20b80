"""The defaults and limits of a collect request, in one torch-free place: the collectors use them
and the CLI shows them in its help."""
from __future__ import annotations

# What `layerdb collect` reads when --data is not given: the first documents of the Pile (what
# Pythia and GPT-NeoX were trained on), small enough to download in seconds.
DEFAULT_DATA = "hf:NeelNanda/pile-10k:train"
DEFAULT_TOKENS = 131_072  # evaluation tokens per checkpoint (before cutting into sequences)
DEFAULT_SEQ_LEN = 1024  # capped at the model's context
DEFAULT_BATCH_SIZE = 8  # sequences per forward pass
DTYPES = ("auto", "float32", "bfloat16", "float16")

# --executor ray
DEFAULT_CPUS_PER_TASK = 1
DEFAULT_MAX_RETRIES = 3  # Ray's own default for tasks
MAX_RETRIES_LIMIT = 10  # a checkpoint that kills its worker this often will not recover
