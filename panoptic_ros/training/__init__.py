"""Training: deterministic data, checkpoints, the loop (single process or torchrun DDP)."""
