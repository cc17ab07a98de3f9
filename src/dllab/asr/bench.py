"""`dllab bench asr`: training throughput and greedy decoding speed, each next to the notebook's way.

1. Training (utterances/s, forward + backward + AdamW step, batch 16, Transformer decoder) with batches
   padded to their longest utterance (dllab) vs padded to the notebook's fixed 2,754 frames; and dllab under
   `--train.precision bf16` (bfloat16 autocast, batches rounded up to 64 frames and 16 tokens so that oneDNN
   reuses its kernels). Each variant first runs its batches once untimed (kernel compilation, caches).
2. Greedy decoding of 256 test utterances with the Transformer decoder: `dllab.seq2seq.decoding.decode`
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
        help="espeak (the default embedded corpus), ljspeech, or an LJSpeech-layout folder",
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


def _train_rate(model, data, idx_batches, pad_to: int | None, bf16: bool = False) -> float:
    import torch

    from dllab.asr.model import loss_fn

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

    for b in batches:  # warm-up: kernel selection / compilation for every shape
        step(b)
    began, n = time.perf_counter(), 0
    for b in batches:
        step(b)
        n += b["tokens"].shape[0]
    return n / (time.perf_counter() - began)


def cmd_bench(args) -> int:
    import dataclasses

    import torch

    from dllab.asr.experiment import ASRConfig, load_splits
    from dllab.asr.features import SpeechData
    from dllab.engine.logs import setup_logging
    from dllab.io import atomic_write_json

    setup_logging()
    if args.threads:
        torch.set_num_threads(args.threads)
    n_utts = args.utterances or (64 if args.quick else 256)
    cfg = ASRConfig()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, corpus=args.corpus))
    splits = load_splits(cfg)
    test = SpeechData(splits["test"].subset(list(range(min(n_utts, len(splits["test"]))))))
    train = SpeechData(splits["train"])
    print(f"device: cpu, {torch.get_num_threads()} torch threads (other processes may share the cores)")

    record = {"threads": torch.get_num_threads(), "quick": args.quick}
    if not args.decode_only:
        record["training"] = _bench_training(train, steps=3 if args.quick else 8)
    record["decoding"] = _bench_decoding(args, test)
    if args.out is not None:
        atomic_write_json(args.out, record)
        print(f"\nwritten: {args.out}")
    return 0 if record["decoding"]["identical"] else 1


def _bench_training(train, steps: int) -> dict:
    import torch

    from dllab.asr.features import BF16_PAD_MULTIPLE, SpeechData
    from dllab.asr.model import ASRModel, ModelConfig

    g = torch.Generator().manual_seed(0)
    idx_batches = list(torch.randperm(len(train), generator=g)[: 16 * steps].split(16))
    torch.manual_seed(0)
    ours = _train_rate(ASRModel(ModelConfig(decoder="transformer")), train, idx_batches, None)
    torch.manual_seed(0)
    rounded = SpeechData(train.features, pad_multiple=BF16_PAD_MULTIPLE)
    bf16 = _train_rate(ASRModel(ModelConfig(decoder="transformer")), rounded, idx_batches, None, bf16=True)
    torch.manual_seed(0)
    base = _train_rate(
        ASRModel(ModelConfig(decoder="transformer")),
        train,
        idx_batches[: max(1, steps // 2)],
        NOTEBOOK_FRAMES,
    )
    print(f"\ntraining, Transformer decoder, batch 16, {steps} steps")
    print(f"  {'batches padded to':<44}{'utterances/s':>14}")
    print(f"  {'the notebook: 2,754 frames, float32':<44}{base:>14.1f}")
    print(f"  {'dllab: the longest in the batch, float32':<44}{ours:>14.1f}   ({ours / base:.1f}x)")
    print(f"  {'dllab: rounded up to 64 frames, bf16 autocast':<44}{bf16:>14.1f}   ({bf16 / base:.1f}x)")
    return {"steps": steps, "notebook_utt_per_s": base, "dllab_utt_per_s": ours, "dllab_bf16_utt_per_s": bf16}


def _bench_decoding(args, test) -> dict:
    import torch

    from dllab.asr import text as vocab
    from dllab.asr.experiment import ASRConfig
    from dllab.asr.model import ASRModel, ModelConfig
    from dllab.engine import RunDir, load_best
    from dllab.seq2seq.decoding import GreedyDecoder, decode

    model = ASRModel(ModelConfig(decoder="transformer"))
    run = RunDir(args.run)
    trained = run.best_checkpoint.exists()
    if trained:
        saved = run.read_config(ASRConfig)
        model = load_best(ASRModel(saved.model), run)
    model.eval()
    max_len = vocab.MAX_TOKENS - 1
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
        f"trained ({args.run})" if trained else "untrained (no checkpoint at --run: every row runs 98 steps)"
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
