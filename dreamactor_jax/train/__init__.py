"""Training: the flow-matching objective (objective.py), LoRA-only AdamW (optim.py), Orbax
checkpointing (checkpoint.py), train state and the jitted step (state.py, step.py)."""
