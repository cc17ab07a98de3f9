"""Datasets, one module per source; each split held as tensors in memory."""
