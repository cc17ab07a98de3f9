"""Taylor linear attention, laid out as the kernel libraries do (fla's ops/<op>/):

- `feature_map.py`: `TaylorFeatureMap`, phi with phi(q)^T phi(k) = the K-term series of exp(scale q^T k);
- `naive.py`: the twins the tests compare against (the L x L formula, and the token-by-token recurrence);
- `chunk.py`: the chunked algorithm in plain PyTorch, blockwise, with its backward written out;
- `fused/`: the compiled C kernels, their loader and buffers (compact maps, K <= 3, CPU);
- `dispatch.py`: the one place that chooses fused or plain, and says which runs.

The public names live in `dllab.attention` (`linear_attention`, `TaylorFeatureMap`, ...).
"""
