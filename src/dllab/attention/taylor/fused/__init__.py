"""The fused Taylor kernels, internal to `dllab.attention` (`dllab.attention.taylor.dispatch` decides when they
run): `native.c`, compiled on first use by `native.py` and called through ctypes, and `chunk.py`, the
autograd functions and cached buffers built on them."""
