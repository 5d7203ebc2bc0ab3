"""Pre-encoded training data: ArrayRecord shards of clips (shards.py), preprocessing (preprocess.py),
the Grain loader (loader.py) and synthetic shards for smoke runs and tests (synthetic.py)."""
