"""Sequence-to-sequence pieces shared by phoneme-to-spelling (`dllab.p2g`) and speech recognition (`dllab.asr`).

    decoding   the IncrementalDecoder protocol and the batched strategies (greedy, nucleus, beam search),
               and LengthLimited (a maximum length per source)
    ctc        JointCTCDecoder: joint CTC/attention scores, each prefix rescored by its CTC prefix probability
    metrics    CER, WER (sentence and single-word), WER@k, textdistance similarities
    vocab      token vocabularies with PAD / SOS / EOS / UNK: built from data (p2g) or a fixed alphabet (asr)
    batching   variable-length id sequences padded into one tensor

The models themselves live with their capability: p2g's LSTM speller in `dllab.p2g.model`, the speech
recogniser in `dllab.asr.model`.
"""

from dllab.lazy import lazy_exports

# Lazy (PEP 562): `Vocab` and the configs that use it stay torch-free, and `dllab --help` imports no torch.
_EXPORTS = {
    # decoding
    "BeamSearchDecoder": "decoding",
    "GreedyDecoder": "decoding",
    "IncrementalDecoder": "decoding",
    "LengthLimited": "decoding",
    "NucleusSampler": "decoding",
    "Strategy": "decoding",
    "decode": "decoding",
    "decode_n_best": "decoding",
    "sample_k": "decoding",
    "select_rows": "decoding",
    # ctc
    "JointCTCDecoder": "ctc",
    # metrics
    "character_error_rate": "metrics",
    "cosine_similarity": "metrics",
    "damerau_levenshtein_similarity": "metrics",
    "group_by_length": "metrics",
    "jaccard_similarity": "metrics",
    "single_word_error_rate": "metrics",
    "text_metrics": "metrics",
    "token_error_rate": "metrics",
    "wer_at_k": "metrics",
    "word_error_rate": "metrics",
    # vocab
    "EOS": "vocab",
    "PAD": "vocab",
    "SOS": "vocab",
    "SPECIALS": "vocab",
    "UNK": "vocab",
    "Vocab": "vocab",
    # batching
    "pad_ids": "batching",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
