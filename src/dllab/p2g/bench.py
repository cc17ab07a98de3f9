"""`dllab bench p2g`: dllab's phoneme-to-spelling training epoch and decoders against the course skeleton's way.

Same model (attention, hidden 128, dropout 0.3), same weights at start, Adam lr 0.003, batch 64:
(a) the skeleton's style: DataLoader + collate that pads each batch in Python, a decoder that runs the LSTM
    and the attention one time step at a time in its forward (the attention projects the encoder outputs
    and builds the mask from the lengths at each call, as its attn(output, encoder_outputs, src_lengths)
    signature implies), `loss.item()` every step, and validation decoded one word at a time (encode, then
    decoder step / argmax / `.item()` until EOS);
(b) dllab: the engine's `fit` (padded tensors batched by index, batches drawn from length buckets as p2g's
    default config does, the whole target through the decoder LSTM at once, attention for all steps in
    one op) and batched decoding (`dllab.seq2seq.decoding`), where
    finished words leave the batch.
Decoding throughput compares batched greedy / nucleus (p = 0.8) / beam (5) with the same strategies run on
one word at a time (each the fastest of 3 runs). Targets: epoch >= 3x faster, greedy decoding >= 20x the
one-word-at-a-time loop.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from dllab.bench.flags import add_bench_parser, add_common_flags

TARGET_EPOCH = 3.0
TARGET_GREEDY = 20.0


def add_bench(sub) -> None:
    p = add_bench_parser(
        sub,
        "p2g",
        help="epoch time and decoding words/s: dllab vs the course skeleton's loop",
        description=__doc__,
        examples=["dllab bench p2g --quick", "dllab bench p2g --threads 2"],
    )
    add_common_flags(p, quick="1,280 training words, 200 validation words", threads=1)
    p.add_argument("--train-words", type=int, default=0, help="training words per epoch (default: all)")
    p.add_argument("--valid-words", type=int, default=0, help="validation words decoded (default: all)")
    p.add_argument("--decode-words", type=int, default=300,
                   help="validation words for the words/s comparison (default 300)")
    p.set_defaults(func=run)

    from dllab.p2g.sigmorphon_bench import add_bench as add_sigmorphon_bench

    add_sigmorphon_bench(sub)  # `dllab bench sigmorphon`


def skeleton_attention(model, s, enc, src_len):
    """The skeleton's attention call, attn(output, encoder_outputs, src_lengths), in the skeleton's formula
    (vᵀtanh(W_s s + W_h h_i) with torch.tanh, then tanh(W_out [c; s])) on the model's weights: it projects the
    encoder outputs and builds the padding mask from the lengths on every call, i.e. every decoder step."""
    import torch

    att = model.attention
    pad = torch.arange(enc.shape[1], device=enc.device)[None] >= src_len[:, None]  # (B, L)
    scores = att.v(torch.tanh(att.w_s(s)[:, :, None] + att.w_h(enc)[:, None])).squeeze(-1)  # (B, T, L)
    weights = torch.softmax(scores.masked_fill(pad[:, None], float("-inf")), dim=-1)
    return torch.tanh(att.w_out(torch.cat([weights @ enc, s], dim=-1)))


def skeleton_forward(model, src, src_len, tgt_in):
    """The skeleton's decoder: LSTM and attention one time step at a time. Same maths as model(...)."""
    import torch

    state = model.encode(src, src_len)
    emb = model.dropout(model.tgt_embed(tgt_in))  # (B, T, H)
    h, c, outputs = state.h, state.c, []
    for t in range(tgt_in.shape[1]):
        s, (h, c) = model.decoder(emb[:, t : t + 1], (h, c))  # (B, 1, H)
        if model.attention is not None:
            s = skeleton_attention(model, s, state.enc, src_len)
        outputs.append(model.dropout(s))
    return model.generator(torch.cat(outputs, dim=1))  # (B, T, V)


def skeleton_greedy(model, words, src_vocab, max_len: int) -> list[list[int]]:
    """One word at a time, the decoder and attention called once per step, one `.item()` per step, as the
    skeleton's validation loop."""
    import torch

    from dllab.seq2seq.vocab import EOS, SOS

    out = []
    with torch.no_grad():
        for phonemes in words:
            ids = src_vocab.encode(phonemes)
            src_len = torch.tensor([len(ids)])
            state = model.encode(torch.tensor([ids]), src_len)
            h, c = state.h, state.c
            token, spelled = SOS, []
            for _ in range(max_len):
                s, (h, c) = model.decoder(model.tgt_embed(torch.tensor([[token]])), (h, c))
                if model.attention is not None:
                    s = skeleton_attention(model, s, state.enc, src_len)
                token = model.generator(s)[0, -1].argmax().item()
                if token == EOS:
                    break
                spelled.append(token)
            out.append(spelled)
    return out


def skeleton_epoch(model, pairs, data, max_len: int) -> tuple[float, float]:
    """One skeleton-style epoch: (training seconds, validation-decoding seconds)."""
    import torch
    from torch.nn.utils.rnn import pad_sequence
    from torch.utils.data import DataLoader

    from dllab.p2g.model import sequence_loss
    from dllab.seq2seq.vocab import PAD

    def collate(batch):
        src = [torch.tensor(s) for s, _ in batch]
        tgt = [torch.tensor(t) for _, t in batch]
        lengths = torch.tensor([len(s) for s in src])
        return (pad_sequence(src, batch_first=True, padding_value=PAD), lengths,
                pad_sequence(tgt, batch_first=True, padding_value=PAD))  # fmt: skip

    loader = DataLoader(pairs, batch_size=64, shuffle=True, collate_fn=collate)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    began = time.perf_counter()
    model.train()
    for src, src_len, tgt in loader:
        optimizer.zero_grad()
        loss = sequence_loss(skeleton_forward(model, src, src_len, tgt[:, :-1]), tgt[:, 1:])
        loss.backward()
        optimizer.step()
        loss.item()
    train_s = time.perf_counter() - began
    model.eval()
    began = time.perf_counter()
    skeleton_greedy(model, data.valid_src, data.src_vocab, max_len)
    return train_s, time.perf_counter() - began


def _words_per_second(fn, n: int, warmup=None, repeats: int = 3) -> tuple[float, object]:
    """n / seconds of `fn()`, the fastest of `repeats` calls (timeit's rule: the others were slowed by
    something else), after one untimed call of `warmup` (a small version of fn: first-call costs)."""
    if warmup is not None:
        warmup()
    best, result = float("inf"), None
    for _ in range(repeats):
        began = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - began)
    return n / best, result


def run(args) -> int:
    import torch

    from dllab.config import replace_path
    from dllab.engine import RunDir, fit, seed_everything
    from dllab.engine.logs import setup_logging
    from dllab.p2g.config import COURSE_DIR, P2GConfig
    from dllab.p2g.data import build_data, src_batches, to_text
    from dllab.p2g.decoding import spell
    from dllab.p2g.experiment import loss_fn
    from dllab.p2g.model import build_model
    from dllab.seq2seq.decoding import BeamSearchDecoder, GreedyDecoder, NucleusSampler, decode
    from dllab.seq2seq.vocab import EOS, SOS

    setup_logging()
    torch.set_num_threads(args.threads)
    train_words = args.train_words or (1280 if args.quick else 0)
    valid_words = args.valid_words or (200 if args.quick else 0)
    source = "course" if (Path(COURSE_DIR) / "train.tsv").exists() else "cmudict"
    cfg = replace_path(P2GConfig(), "model.attn", True)
    cfg = replace_path(cfg, "data.source", source)
    cfg = replace_path(cfg, "data.limit_train", train_words)
    cfg = replace_path(cfg, "data.limit_valid", valid_words)
    cfg = replace_path(cfg, "train.epochs", 1)
    cfg = replace_path(cfg, "train.threads", args.threads)
    data = build_data(cfg.data)
    vocabs = (data.src_vocab, data.tgt_vocab)
    n_train, n_valid = len(data.train), len(data.valid_gold)
    print(f"p2g benchmark: {source} data, {n_train:,} training words, {n_valid:,} validation words, "
          f"attention, hidden {cfg.model.hidden}, batch 64, {args.threads} torch thread(s); dllab draws its "
          f"batches from length buckets of {cfg.train.bucket} batches")  # fmt: skip

    # (a) skeleton style
    seed_everything(0)
    model = build_model(cfg, *vocabs)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    tr = data.train
    pairs = [(tr.src[i, : tr.src_len[i]].tolist(), tr.tgt[i, : tr.tgt_len[i]].tolist()) for i in range(n_train)]
    sk_train, sk_valid = skeleton_epoch(model, pairs, data, cfg.decode.max_len)

    # (b) dllab: the engine's fit, one epoch, validation CER by batched greedy decoding
    model.load_state_dict(initial)
    from dllab.seq2seq.metrics import character_error_rate

    def evaluate_fn(m):
        hyps = [h[0] for h in spell(m, data.valid_src, vocabs, GreedyDecoder(), cfg.decode)]
        return {"val_cer": character_error_rate(hyps, data.valid_gold)}

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = RunDir(Path(tmp) / "bench")
        run_dir.prepare("p2g-bench", cfg, resume=False)
        result = fit(model, data.train, loss_fn, evaluate_fn, cfg.optim, cfg.train, run_dir,
                     monitor="val_cer", mode="min", show_progress=False)  # fmt: skip
    record = result.history[0]
    dl_train, dl_epoch = record["train_seconds"], record["seconds"]
    dl_valid = dl_epoch - dl_train  # validation decoding + checkpoint writes

    # decoding throughput (trained-for-one-epoch weights, eval mode) on the first --decode-words words
    model.eval()
    words = data.valid_src[: args.decode_words]
    n_words = len(words)
    rows = []
    g = torch.Generator().manual_seed(0)
    max_len = cfg.decode.max_len
    few = words[:20]  # warm-up words: each side's first call pays one-time costs outside the timing
    one_greedy, base_out = _words_per_second(
        lambda: skeleton_greedy(model, words, data.src_vocab, max_len), n_words,
        lambda: skeleton_greedy(model, few, data.src_vocab, max_len))  # fmt: skip
    bat_greedy, bat_out = _words_per_second(
        lambda: spell(model, words, vocabs, GreedyDecoder(), cfg.decode), n_words,
        lambda: spell(model, few, vocabs, GreedyDecoder(), cfg.decode))  # fmt: skip
    base_text = [to_text(ids, data.tgt_vocab) for ids in base_out]
    same = sum(o[0] == b for o, b in zip(bat_out, base_text, strict=True))
    rows.append(("greedy", one_greedy, bat_greedy, TARGET_GREEDY))
    singles = list(src_batches(words, data.src_vocab, 1, torch.device("cpu")))
    for label, strategy in (("nucleus p=0.8", NucleusSampler(0.8, g)), ("beam 5", BeamSearchDecoder(5))):
        one, _ = _words_per_second(
            lambda s=strategy: [decode(model, b, s, SOS, EOS, cfg.decode.max_len) for b in singles], n_words,
            lambda s=strategy: [decode(model, b, s, SOS, EOS, cfg.decode.max_len) for b in singles[:20]])
        bat, _ = _words_per_second(lambda s=strategy: spell(model, words, vocabs, s, cfg.decode), n_words,
                                   lambda s=strategy: spell(model, few, vocabs, s, cfg.decode))  # fmt: skip
        rows.append((label, one, bat, None))

    epoch_ratio = (sk_train + sk_valid) / dl_epoch
    print()
    print(f"{'':<34}{'skeleton style':>16}{'dllab':>12}{'speed-up':>10}")
    print(f"{'training (s)':<34}{sk_train:>16.1f}{dl_train:>12.1f}{sk_train / dl_train:>9.1f}x")
    print(f"{'validation decoding (s)':<34}{sk_valid:>16.1f}{dl_valid:>12.1f}{sk_valid / dl_valid:>9.1f}x")
    print(f"{'epoch = training + validation (s)':<34}{sk_train + sk_valid:>16.1f}{dl_epoch:>12.1f}"
          f"{epoch_ratio:>9.1f}x")  # fmt: skip
    print()
    print(f"{f'decoding {n_words} words (words/s)':<34}{'one at a time':>16}{'batched':>12}{'speed-up':>10}")
    for label, one, bat, _ in rows:
        print(f"{label:<34}{one:>16.0f}{bat:>12.0f}{bat / one:>9.1f}x")
    print()
    greedy_ratio = rows[0][2] / rows[0][1]
    verdict = {True: "met", False: "MISSED"}
    print(f"target epoch time >= {TARGET_EPOCH:.0f}x faster: {epoch_ratio:.2f}x -> "
          f"{verdict[epoch_ratio >= TARGET_EPOCH]}")  # fmt: skip
    print(f"target greedy decoding >= {TARGET_GREEDY:.0f}x the one-word loop: {greedy_ratio:.1f}x -> "
          f"{verdict[greedy_ratio >= TARGET_GREEDY]}")  # fmt: skip
    print(f"batched greedy spells {same}/{n_words} words exactly as the one-word loop (a difference can only "
          "come from float rounding in batched matrix products flipping a near-tie)")
    print("(timings on a shared machine: other jobs may have loaded the CPU during this run)")
    return 0
