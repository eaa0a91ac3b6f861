"""Compute kernels, one folder per op: `ref.py` (pure torch, fp32: the CPU path and the
oracle), `triton.py` (GPU kernel with a checked wrapper), `README.md` (the math)."""
