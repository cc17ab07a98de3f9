"""Speech recognition (2023-24 Question 3): log-mel features -> Transformer encoder -> LSTM / Transformer /
Taylor linear-attention decoders, decoded incrementally through `dllab.seq2seq.decoding`."""
