"""The report's transcript-length blocks, from hand-written run directories (no training)."""

import json

from dllab.asr import experiment as ex
from dllab.asr.config import ASRConfig
from dllab.asr.report import build_section
from dllab.config import to_dict
from dllab.report.document import Figure, Paragraph, ReportContext, Table


def _summary(mode, cer, decoding="GreedyDecoder()"):
    groups = [{"lengths": "<= 50", "utterances": 2, "cer": cer / 2, "cer_whole": cer / 2},
              {"lengths": "51-100", "utterances": 5, "cer": cer, "cer_whole": cer},
              {"lengths": "> 100", "utterances": 3, "cer": cer * 1.2, "cer_whole": cer * 2}]  # fmt: skip
    return {"cer": cer, "wer": 2 * cer, "jaccard": 0.9, "cosine": 0.9, "damerau_levenshtein": 0.9, "mode": mode,
            "utterances": 10, "of": 10, "by_length": groups, "decoding": decoding, "cer_whole": cer * 1.5,
            "decode_utterances_per_second": 5.0, "examples": []}  # fmt: skip


def _run(root, name, mode, left_out=0, limit=0):
    cfg = to_dict(ASRConfig())
    cfg["data"].update(mode=mode, train_max_chars=limit)
    cfg["corpus"]["unit"] = "verse"
    texts = ["a" * n for n in (20, 60, 99, 120, 187)]
    record = {"experiment": "asr", "config": cfg, "corpus": "/cache/espeak/kjv-2400-abcd", "parameters": 1,
              "sizes": {"train": 3, "val": 1, "test": 1}, "left_out_of_training": left_out,
              "transcripts": {"train": ex.transcript_lengths(texts[:3]), "val": ex.transcript_lengths(texts[3:4]),
                              "test": ex.transcript_lengths(texts[4:])}}  # fmt: skip
    run = root / "asr" / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(record))
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": 1.0, "val_loss": 1.0}) + "\n")
    (run / "test_metrics.json").write_text(json.dumps(_summary(mode, 0.2)))
    beam = _summary(mode, 0.1, "BeamSearchDecoder(beam_size=5, length_penalty=1.0) + CTC 0.3")
    (run / "test_metrics_beam.json").write_text(json.dumps(beam))


def test_the_section_shows_lengths_cer_by_length_and_mode_and_the_training_filter(tmp_path):
    _run(tmp_path, "full", "full")
    _run(tmp_path, "course", "course", left_out=1, limit=100)
    section = build_section(ReportContext(runs_root=tmp_path, out_dir=tmp_path / "out"))
    tables = {b.headers[0]: b for b in section.blocks if isinstance(b, Table)}
    lengths = tables["corpus"]
    assert lengths.rows[-1][:4] == ["LJSpeech 1.1", 13_100, "99.9", 187]
    assert lengths.rows[0][1:5] == [5, f"{(20 + 60 + 99 + 120 + 187) / 5:.1f}", 187, "60%"]
    by_length = next(t for t in tables.values() if "mode" in t.headers)
    assert len(by_length.rows) == 4  # two runs x (greedy, beam + CTC)
    course_beam = next(r for r in by_length.rows if r[1] == "course" and "CTC" in r[2])
    assert course_beam[3] == "10 of 10" and course_beam[7] == "0.1200 (3)" and course_beam[8] == "0.1500"
    filter_text = next(b.text for b in section.blocks if isinstance(b, Paragraph) and "Training filter" in b.text)
    assert "1 of 3 training utterances left out by `--data.train_max_chars 100`" in filter_text
    assert "all 3 training utterances used" in filter_text
    assert any(isinstance(b, Figure) and b.path.endswith("asr_lengths.png") for b in section.blocks)
    assert (tmp_path / "out" / "figures" / "asr_lengths.png").exists()


def test_the_bench_batching_table_reads_bench_json(tmp_path):
    _run(tmp_path, "full", "full")
    rows = [{"batches": "batches of 16, random order", "count": 30, "largest": 16, "padding": 0.4,
             "peak_bytes": 2**30, "utt_per_s": 10.0},
            {"batches": "frame budget 16000, sorted in pools of 20", "count": 28, "largest": 40, "padding": 0.05,
             "peak_bytes": None, "utt_per_s": 15.0}]  # fmt: skip
    decoding = {"utterances": 256, "batch_size": 64, "trained": True, "notebook_seconds": 60.0, "cache_seconds": 6.0,
                "speedup": 10.0, "identical": True}  # fmt: skip
    bench = {"threads": 2, "decoding": decoding, "batching": {"utterances": 480, "rows": rows}}
    (tmp_path / "asr" / "bench.json").write_text(json.dumps(bench))
    section = build_section(ReportContext(runs_root=tmp_path, out_dir=tmp_path / "out"))
    table = next(b for b in section.blocks if isinstance(b, Table) and b.headers[0] == "training batches")
    assert table.rows[1][-1] == "15.0 (1.50x)" and table.rows[0][4] == "1024" and table.rows[1][4] == "-"
    assert "480 training utterances" in table.caption
