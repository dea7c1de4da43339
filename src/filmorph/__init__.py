"""filmorph: Filipino morphology-aware tokenization pipeline (corpus, arms, shards, training, evaluation)."""

__version__ = "0.1.0"
