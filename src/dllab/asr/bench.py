"""`dllab bench asr`: training throughput and greedy decoding speed, each next to the notebook's way, and
batching by a frame budget next to batches of 16, on the LJSpeech-length embedded corpus by default.

1. Training (utterances/s, forward + backward + AdamW step, batch 16, Transformer decoder) with batches
   padded to their longest utterance (dllab) vs padded to the notebook's fixed 2,754 frames; and dllab under
   `--train.precision bf16` (bfloat16 autocast, batches rounded up to 64 frames and 16 tokens so that oneDNN
   reuses its kernels), with the notebook's encoder and with `--model.subsample 4`. Each variant first runs
   its batches once untimed (kernel compilation, caches).
2. Batching, in one run, over the same training utterances (one epoch of them, bf16 as training runs):
   fixed-count batches of 16 in random order, the same sorted by length within pools of 20 batches
   (`--train.bucket 20`), and batches by a frame budget (`--train.batch_budget`, default 16 x the mean
   utterance's frames, so the same frames per batch on average) sorted the same way: utterances/s, padding
   and the peak memory of a pass.
3. Greedy decoding of 256 test utterances with the Transformer decoder: `dllab.seq2seq.decoding.decode`
   with the KV cache (cross-attention keys/values once per utterance, self-attention cache extended per
   step, finished rows dropped) vs the notebook's loop, which re-runs the decoder on the whole prefix at every
   step for the whole batch until every row has ended. Target: >= 5x. Both must give the same transcripts.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dllab.bench.flags import add_bench_parser, add_common_flags

NOTEBOOK_FRAMES = 2754  # the notebook padded every utterance to this many frames
TARGET_SPEEDUP = 5.0


def add_bench(sub) -> None:
    p = add_bench_parser(
        sub,
        "asr",
        help="ASR training throughput and KV-cached vs prefix-recomputing greedy decoding",
        description=__doc__,
        examples=["flock /tmp/dllab-bench.lock dllab bench asr --quick"],
    )
    add_common_flags(p, quick="64 utterances, fewer training steps", threads=0, out=Path("runs/asr/bench.json"))
    p.add_argument("--save", type=Path, dest="out", help=argparse.SUPPRESS)  # the old name of --out
    p.add_argument(
        "--run",
        type=Path,
        default=Path("runs/asr/transformer"),
        help="a trained Transformer-decoder run to decode with (default runs/asr/transformer; "
        "an untrained model is used when it has no checkpoint)",
    )
    p.add_argument("--utterances", type=int, default=0, help="utterances to decode (default 256, quick 64)")
    p.add_argument("--batch-size", type=int, default=64, help="utterances decoded at once (default 64)")
    p.add_argument("--decode-only", action="store_true", help="skip the training-throughput part")
    p.add_argument(
        "--corpus",
        default="espeak",
        help="espeak (the embedded corpus, default), ljspeech, or an LJSpeech-layout folder",
    )
    p.add_argument(
        "--unit",
        choices=["verse", "clause"],
        default="verse",
        help="the embedded corpus's utterances: verse (LJSpeech's lengths, the default) or clause (short)",
    )
    p.add_argument("--size", type=int, default=2400, help="utterances of the embedded corpus (default 2400)")
    p.add_argument(
        "--batch-budget",
        type=int,
        default=0,
        help="frames per batch of the frame-budget batching (default: 16 x the mean utterance's frames)",
    )
    p.add_argument(
        "--pool", type=int, default=0, help="training utterances the batching comparison runs (default 480, quick 96)"
    )
    p.set_defaults(func=cmd_bench)


def _notebook_greedy(model, src, max_len: int) -> list[list[int]]:
    """The notebook's decoding: encode once, then re-run the decoder over the whole prefix at every step."""
    import torch

    from dllab.asr import text as vocab

    xa, pad = model.encoder(src["feats"], src["feat_lens"])
    tokens = torch.full((xa.shape[0], 1), vocab.SOS, dtype=torch.long)
    done = torch.zeros(xa.shape[0], dtype=torch.bool)
    for _ in range(max_len):
        logits = model.head(model.decoder(tokens, xa, pad))[:, -1]  # (B, V): the whole prefix, every step
        nxt = logits.argmax(-1)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == vocab.EOS
        if bool(done.all()):
            break
    out = []
    for row in tokens[:, 1:].tolist():
        out.append(row[: row.index(vocab.EOS)] if vocab.EOS in row else row)
    return out


def _train_rate(model, data, idx_batches, pad_to: int | None, bf16: bool = False, memory: bool = False):
    """Utterances/s of a timed pass over `idx_batches` after an untimed one; with `memory`, also the peak
    resident-set growth (bytes) of the timed pass: (rate, peak)."""
    import torch

    from dllab.asr.model import loss_fn
    from dllab.bench import peak_memory

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    batches = []
    for idx in idx_batches:
        b = data.batch(idx)
        if pad_to is not None and b["feats"].shape[1] < pad_to:
            b["feats"] = torch.nn.functional.pad(b["feats"], (0, 0, 0, pad_to - b["feats"].shape[1]))
        batches.append(b)

    def step(b) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model, b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def run() -> float:
        began = time.perf_counter()
        for b in batches:
            step(b)
        return time.perf_counter() - began

    run()  # warm-up: kernel selection / compilation for every shape
    n = sum(b["tokens"].shape[0] for b in batches)
    if not memory:
        return n / run()
    took: list[float] = []
    peak = peak_memory(lambda: took.append(run()))
    return n / took[0], peak


def cmd_bench(args) -> int:
    import dataclasses
    import os

    import torch

    from dllab.asr.experiment import ASRConfig, corpus_root, load_splits, resolve_lengths
    from dllab.asr.features import SpeechData
    from dllab.bench import cpu_counters, cpu_line, cpu_shares
    from dllab.engine.logs import setup_logging
    from dllab.io import atomic_write_json

    setup_logging()
    if args.threads:
        torch.set_num_threads(args.threads)
    n_utts = args.utterances or (64 if args.quick else 256)
    cfg = ASRConfig()
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, corpus=args.corpus),
        corpus=dataclasses.replace(cfg.corpus, unit=args.unit, size=args.size),
    )
    splits = load_splits(cfg)
    cfg = resolve_lengths(cfg, splits)
    test = SpeechData(splits["test"].subset(list(range(min(n_utts, len(splits["test"]))))))
    train = SpeechData(splits["train"], max_tokens=cfg.model.max_tokens)
    corpus = corpus_root(cfg, False)
    chars = [len(t) for t in splits["train"].texts]
    print(f"device: cpu, {torch.get_num_threads()} torch threads (other processes may share the cores)")
    print(f"corpus: {corpus} ({len(chars)} training transcripts, mean {sum(chars) / len(chars):.1f} characters)")

    record = {"threads": torch.get_num_threads(), "quick": args.quick, "corpus": str(corpus)}
    started, began = cpu_counters(), time.perf_counter()
    if not args.decode_only:
        record["training"] = _bench_training(train, cfg.model, steps=3 if args.quick else 8)
        pool = args.pool or (96 if args.quick else 480)
        record["batching"] = _bench_batching(train, cfg.model, pool, args.batch_budget)
    record["decoding"] = _bench_decoding(args, test, cfg)
    shares = cpu_shares(started, time.perf_counter() - began, os.cpu_count() or 1)
    if shares is not None:
        record["cpu"] = shares
        print("\n" + cpu_line(shares))
    if args.out is not None:
        atomic_write_json(args.out, record)
        print(f"\nwritten: {args.out}")
    return 0 if record["decoding"]["identical"] else 1


def _bench_training(train, model_cfg, steps: int) -> dict:
    import dataclasses

    import torch

    from dllab.asr.features import BF16_PAD_MULTIPLE, SpeechData
    from dllab.asr.model import ASRModel

    g = torch.Generator().manual_seed(0)
    idx_batches = list(torch.randperm(len(train), generator=g)[: 16 * steps].split(16))
    torch.manual_seed(0)
    ours = _train_rate(ASRModel(model_cfg), train, idx_batches, None)
    torch.manual_seed(0)
    rounded = SpeechData(train.features, pad_multiple=BF16_PAD_MULTIPLE, max_tokens=train.max_tokens)
    bf16 = _train_rate(ASRModel(model_cfg), rounded, idx_batches, None, bf16=True)
    torch.manual_seed(0)
    sub4 = dataclasses.replace(model_cfg, subsample=4)
    bf16_sub4 = _train_rate(ASRModel(sub4), rounded, idx_batches, None, bf16=True)
    torch.manual_seed(0)
    base = _train_rate(ASRModel(model_cfg), train, idx_batches[: max(1, steps // 2)], NOTEBOOK_FRAMES)
    print(f"\ntraining, Transformer decoder, batch 16, {steps} steps")
    print(f"  {'batches padded to':<50}{'utterances/s':>14}")
    print(f"  {'the notebook: 2,754 frames, float32':<50}{base:>14.1f}")
    print(f"  {'dllab: the longest in the batch, float32':<50}{ours:>14.1f}   ({ours / base:.1f}x)")
    print(f"  {'dllab: rounded up to 64 frames, bf16 autocast':<50}{bf16:>14.1f}   ({bf16 / base:.1f}x)")
    print(f"  {'dllab: the same with --model.subsample 4':<50}{bf16_sub4:>14.1f}   ({bf16_sub4 / base:.1f}x)")
    return {"steps": steps, "notebook_utt_per_s": base, "dllab_utt_per_s": ours, "dllab_bf16_utt_per_s": bf16,
            "dllab_bf16_subsample4_utt_per_s": bf16_sub4}  # fmt: skip


def _bench_batching(train, model_cfg, pool: int, budget: int) -> dict:
    """One epoch over `pool` training utterances in bf16: fixed batches of 16 (random, length-sorted) against
    frame-budget batches; utterances/s, padded share, peak memory."""
    import torch

    from dllab.asr.features import BF16_PAD_MULTIPLE, SpeechData
    from dllab.asr.model import ASRModel
    from dllab.engine.loop import budget_batches, index_batches

    g = torch.Generator().manual_seed(1)
    chosen = torch.randperm(len(train), generator=g)[: min(pool, len(train))]
    features = train.features.subset(chosen.tolist())
    data = SpeechData(features, pad_multiple=BF16_PAD_MULTIPLE, max_tokens=train.max_tokens)
    lengths = data.lengths
    budget = budget or int(16 * float(lengths.float().mean()))
    variants = {
        "batches of 16, random order": index_batches(len(data), 16, torch.Generator().manual_seed(0)),
        "batches of 16, sorted in pools of 20": index_batches(
            len(data), 16, torch.Generator().manual_seed(0), lengths=lengths, bucket=20
        ),
        f"frame budget {budget}, sorted in pools of 20": budget_batches(
            lengths, budget, torch.Generator().manual_seed(0), bucket=20
        ),
    }
    rows = []
    print(f"\nbatching: one epoch of {len(data)} training utterances (mean {float(lengths.float().mean()):.0f} "
          f"frames), Transformer decoder, bf16 autocast")  # fmt: skip
    print(f"  {'batches':<44}{'count':>6}{'largest':>8}{'padding':>9}{'peak MB':>9}{'utterances/s':>14}")
    for name, batches in variants.items():
        padded = sum(int(lengths[b].max()) * len(b) for b in batches)
        padding = 1 - float(lengths.sum()) / padded
        torch.manual_seed(0)
        rate, peak = _train_rate(ASRModel(model_cfg), data, batches, None, bf16=True, memory=True)
        mb = peak / 2**20 if peak is not None else float("nan")
        largest = max(len(b) for b in batches)
        print(f"  {name:<44}{len(batches):>6}{largest:>8}{padding:>9.0%}{mb:>9.0f}{rate:>14.1f}")
        rows.append({"batches": name, "count": len(batches), "largest": largest, "padding": padding,
                     "peak_bytes": peak, "utt_per_s": rate})  # fmt: skip
    base = rows[0]["utt_per_s"]
    print(f"  frame budget vs batches of 16 (random): {rows[2]['utt_per_s'] / base:.2f}x utterances/s; "
          f"vs sorted batches of 16: {rows[2]['utt_per_s'] / rows[1]['utt_per_s']:.2f}x")  # fmt: skip
    return {"utterances": len(data), "budget": budget, "rows": rows}


def _bench_decoding(args, test, cfg) -> dict:
    import dataclasses

    import torch

    from dllab.asr import text as vocab
    from dllab.asr.experiment import ASRConfig
    from dllab.asr.model import ASRModel
    from dllab.engine import RunDir, load_best
    from dllab.seq2seq.decoding import GreedyDecoder, decode

    model_cfg = dataclasses.replace(cfg.model, decoder="transformer")
    model = ASRModel(model_cfg)
    run = RunDir(args.run)
    trained = run.best_checkpoint.exists()
    if trained:
        model_cfg = run.read_config(ASRConfig).model
        model = load_best(ASRModel(model_cfg), run)
    model.eval()
    max_len = model_cfg.max_tokens - 1
    timings, outputs = {}, {}
    for label in ("notebook", "cache"):
        began = time.perf_counter()
        rows: list[list[int]] = []
        with torch.no_grad():
            for start in range(0, len(test), args.batch_size):
                batch = test.batch(torch.arange(start, min(start + args.batch_size, len(test))))
                src = {"feats": batch["feats"], "feat_lens": batch["feat_lens"]}
                if label == "cache":
                    rows += decode(model, src, GreedyDecoder(), sos=vocab.SOS, eos=vocab.EOS, max_len=max_len)
                else:
                    rows += _notebook_greedy(model, src, max_len)
        timings[label] = time.perf_counter() - began
        outputs[label] = rows
    same = outputs["notebook"] == outputs["cache"]
    tokens = sum(len(r) + 1 for r in outputs["cache"])
    speedup = timings["notebook"] / timings["cache"]
    which = (
        f"trained ({args.run})" if trained else f"untrained (no checkpoint at --run: every row runs {max_len} steps)"
    )
    print(
        f"\ngreedy decoding of {len(test)} utterances, batch {args.batch_size}, Transformer decoder, {which}"
    )
    print(f"  {'decoding':<40}{'seconds':>9}{'utterances/s':>14}")
    print(
        f"  {'the notebook: prefix re-run every step':<40}{timings['notebook']:>9.2f}"
        f"{len(test) / timings['notebook']:>14.1f}"
    )
    print(
        f"  {'dllab: KV cache, finished rows dropped':<40}{timings['cache']:>9.2f}"
        f"{len(test) / timings['cache']:>14.1f}"
    )
    print(
        f"  speed-up {speedup:.1f}x (target >= {TARGET_SPEEDUP:.0f}x: "
        f"{'met' if speedup >= TARGET_SPEEDUP else 'MISSED'});"
        f" identical transcripts: {'yes' if same else 'NO'}; {tokens} tokens emitted"
    )
    return {
        "utterances": len(test),
        "batch_size": args.batch_size,
        "trained": trained,
        "notebook_seconds": timings["notebook"],
        "cache_seconds": timings["cache"],
        "speedup": speedup,
        "identical": same,
    }
