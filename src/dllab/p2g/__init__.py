"""Phoneme-to-spelling (2024-25 homework 2, question 3): spell English words from their IPA symbols.

    config       P2GConfig, LSTMConfig, TransformerConfig, DataConfig, DecodeConfig (torch-free)
    data         the word lists, vocabularies and train as tensors (build_data, PairData); Symbols: the
                 direction (p2g / g2p) and the spelling's units
    model        the LSTM encoder-decoder with Bahdanau attention, and ensembles of it; cells: the LSTM cell
                 step both incremental decoders run by hand
    transformer  the Transformer encoder-decoder (`--arch transformer`)
    transducer   the hard-attention transducer (`--arch transducer`); align: its EM alignment and static
                 oracle; imitation: its dynamic oracle and roll-in loss (`--rollin`)
    decoding     spell, n-best lists and reranking by both directions
    experiment   train a run, evaluate it (a split or any file), load it
    presets      per-size settings for SIGMORPHON 2021 Task 1 (torch-free)
    sigmorphon   the sweep over the task's languages, its results, the tables
    cli, bench, sigmorphon_bench, report   `dllab p2g ...`, `dllab bench p2g|sigmorphon`, the report section

    from dllab.engine import RunDir
    from dllab.p2g import load_run, make_strategy, spell

    cfg, model, vocabs = load_run(RunDir("runs/p2g/course-attn"))
    strategy, _ = make_strategy(top_p=None, beam=5, seed=0)
    spell(model, [("t͡ʃ", "ɝ", "t͡ʃ")], vocabs, strategy, cfg.decode)   # [[spelling]] per word
"""

from dllab.lazy import lazy_exports

# Lazy (PEP 562): the configs load without torch, so `dllab --help` stays quick.
_EXPORTS = {
    # config
    "COURSE_DIR": "config",
    "DataConfig": "config",
    "DecodeConfig": "config",
    "LSTMConfig": "config",
    "P2GConfig": "config",
    "TransformerConfig": "config",
    # data
    "P2GData": "data",
    "PairData": "data",
    "build_data": "data",
    "read_vocabs": "data",
    "Symbols": "data",
    "symbols_for": "data",
    "to_text": "data",
    # model
    "EnsembleDecoder": "model",
    "LSTMSeq2Seq": "model",
    "build_model": "model",
    "sequence_loss": "model",
    "TransformerSeq2Seq": "transformer",
    # presets, sigmorphon
    "PRESETS": "presets",
    "apply_preset": "presets",
    "read_results": "sigmorphon",
    "run_sweep": "sigmorphon",
    # decoding
    "Group": "decoding",
    "make_strategy": "decoding",
    "rerank_both_directions": "decoding",
    "rerank_pooled": "decoding",
    "spell": "decoding",
    "spell_n_best": "decoding",
    "spelling_log_probs": "decoding",
    "together": "decoding",
    # experiment
    "evaluate": "experiment",
    "load_run": "experiment",
    "run_path": "experiment",
    "train": "experiment",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
