"""Sequence-to-sequence pieces shared by phoneme-to-spelling and speech recognition.

    decoding   the IncrementalDecoder protocol and the batched strategies (greedy, nucleus, beam search)
    metrics    CER, WER (sentence and single-word), WER@k, textdistance similarities
    vocab      token vocabularies with PAD / SOS / EOS / UNK
    batching   variable-length sequences held as padded tensors + lengths, batched by index
    lstm       the bidirectional-LSTM encoder and (Bahdanau-attention) LSTM decoder
    config     LSTMConfig, torch-free (so that `--help` texts need no torch); re-exported by lstm
"""
