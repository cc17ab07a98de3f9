"""SIGMORPHON 2021 Task 1 with the speller: every language of a subtask, in either direction, as one sweep.

    <runs>/<direction>/<language>/s<seed>/       one member run per seed (`dllab p2g train` layout)
    <runs>/<direction>/<language>/r2l-s<seed>/   a right-to-left member; lstm-s<seed>/, lstm-r2l-s<seed>/:
                                                 the preset's companions of another architecture (low)
    <runs>/<direction>/<language>/results.json   the language's dev figures: its members decoded together
                                                 (and with `test_dir`, its test figures)
    <runs>/<direction>/<language>/predictions-dev.tsv   the dev outputs in the task's two columns
    <runs>/<direction>/<language>/predictions-test.tsv  with `test_dir`: the test file's outputs, the same way
    <runs>/<direction>/<language>/predictions-test-covered.tsv  the same for a covered test file (no gold)

`run_sweep` makes one job of `dllab.engine.sweep.run_jobs` per (direction, language) (parallel one-thread
processes): it trains the language's members (a finished member is skipped, an interrupted one resumed),
then decodes its dev split with them together (`dllab.p2g.experiment.evaluate`), and with `test_dir` the
language's test file too, with the same members, beam and reranking: the held-out figure of the very system
the dev figure describes, in one command, without training again.

    member_config(language, direction, seed, preset, overrides)   the P2GConfig of one member
    run_sweep(...)                train + evaluate; returns {language: results}
    test_files(test_dir, languages, directions)  each language's test file in the task's layout, checked
    read_results(root, direction) the results.json files of a sweep root
    macro(results)                macro-average WER / CER per subtask (the task's ranking), with its 95%
                                  sampling interval over dev sets of these sizes
    results_table(...)            the per-language rows beside the baseline (for the CLI, bench and report)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dllab.config import apply_overrides, from_dict, replace_path, to_dict
from dllab.data.sigmorphon import (
    BASELINE_DEV,
    BASELINE_MACRO_DEV,
    BASELINE_MACRO_TEST,
    BASELINE_TEST,
    LANGUAGES,
    SUBTASKS,
)
from dllab.engine.rundir import RunDir
from dllab.engine.sweep import Job, run_jobs
from dllab.io import atomic_write_json
from dllab.p2g.config import DataConfig, P2GConfig
from dllab.p2g.presets import apply_preset

log = logging.getLogger(__name__)


def member_config(language: str, direction: str, seed: int, preset: str = "auto", overrides: Sequence[str] = (),
                  data_dir: str | None = None, epochs_scale: float = 1.0) -> P2GConfig:  # fmt: skip
    """The config of one ensemble member: the language's data, the preset for its size, the seed, `overrides`;
    `epochs_scale` scales the epochs (a cheaper sweep: 0.5 trains each language half as long)."""
    data = DataConfig(source="sigmorphon", language=language, direction=direction)
    if data_dir:
        data = replace_path(data, "sigmorphon_dir", data_dir)
    cfg = P2GConfig(data=data)
    cfg = apply_preset(cfg, preset, overrides) if preset != "none" else apply_overrides(cfg, overrides)
    if epochs_scale != 1.0:
        cfg = replace_path(cfg, "train.epochs", max(1, round(cfg.train.epochs * epochs_scale)))
    return replace_path(cfg, "train.seed", seed)


def language_dir(root: str | Path, direction: str, language: str) -> Path:
    return Path(root) / direction / language


def train_member(run_path: str, config: dict[str, Any], threads: int) -> dict[str, Any]:
    """A sweep job: train one member (resuming an interrupted run, skipping a finished one)."""
    from dllab.p2g.experiment import train

    cfg = from_dict(P2GConfig, config)
    cfg = replace_path(cfg, "train.threads", threads)
    run = RunDir(run_path)
    history = run.read_metrics()
    if not (history and history[-1]["epoch"] >= cfg.train.epochs and run.best_checkpoint.exists()):
        train(cfg, run, resume=run.exists(), show_progress=False)
        history = run.read_metrics()
    best = min(history, key=lambda r: (r[f"val_{cfg.select}"], r["epoch"]))
    return {"run": run_path, "best_epoch": best["epoch"], "val_wer": best["val_wer"], "val_cer": best["val_cer"],
            "seconds": sum(r["seconds"] for r in history)}  # fmt: skip


def evaluate_language(directory: str, members: list[str], beam: int, threads: int,
                      right_to_left: Sequence[str] = (), test_file: str | None = None,
                      companions: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    """A sweep job: decode the language's dev split with its members together; write results.json.

    On the way it measures what each step adds, on dev: one member alone decoded greedily (its kept
    checkpoints averaged when the preset says --average), the members together greedily, then with the beam,
    then the n best of both directions' beams reranked by both (`rerank_both_directions`). `test_file`: a file
    in the task's format decoded the same way as the last step, its figures under "test" and its outputs in
    predictions-test.tsv. `companions`: runs of another architecture (both directions) whose beams join the
    pool and whose scores join the reranking (`rerank_pooled`), a last step."""
    from dllab.p2g.experiment import evaluate

    runs = [RunDir(m) for m in members]
    r2l = [RunDir(m) for m in right_to_left]
    began = time.perf_counter()
    steps = {}
    _, single = next(iter(evaluate(runs[0], split="valid").items()))
    steps["one member, greedy"] = 100 * single["wer"]
    if len(runs) > 1:
        _, together = next(iter(evaluate(runs[0], split="valid", ensemble=runs[1:]).items()))
        steps[f"{len(runs)} members, greedy"] = 100 * together["wer"]
    key, metrics = next(iter(evaluate(runs[0], beam=beam if beam > 1 else None, split="valid",
                                      ensemble=runs[1:] or None).items()))  # fmt: skip
    if beam > 1:
        steps[f"{len(runs)} member(s), beam {beam}"] = 100 * metrics["wer"]
    if r2l and beam > 1:
        key, metrics = next(iter(evaluate(runs[0], beam=beam, split="valid", ensemble=runs[1:] or None,
                                          rescore=r2l).items()))  # fmt: skip
        steps[f"both directions' n best reranked ({len(r2l)} right-to-left member(s))"] = 100 * metrics["wer"]
    others = [RunDir(m) for m in companions]
    rescore = [*r2l, *others] if beam > 1 else []
    if others and beam > 1:
        key, metrics = next(iter(evaluate(runs[0], beam=beam, split="valid", ensemble=runs[1:] or None,
                                          rescore=rescore).items()))  # fmt: skip
        kinds = sorted({o.read_config(P2GConfig).arch for o in others})
        steps[f"pooled and reranked with {len(others)} {'/'.join(kinds)} member(s) too"] = 100 * metrics["wer"]
    record = runs[0].read_config_record()
    language = record["config"]["data"]["language"]
    direction = record["config"]["data"]["direction"]
    member_rows = []
    for run in [*runs, *r2l, *others]:
        history = run.read_metrics()
        select = run.read_config_record()["config"].get("select", "cer")
        best = min(history, key=lambda r: (r[f"val_{select}"], r["epoch"]))
        member_rows.append({"run": str(run.path), "best_epoch": best["epoch"], "epochs": len(history),
                            "wer": 100 * best["val_wer"], "cer": best["val_cer"],
                            "train_seconds": sum(r["seconds"] for r in history)})  # fmt: skip
    predictions = Path(runs[0].path) / f"predictions-{key}.tsv"
    target = Path(directory) / "predictions-dev.tsv"
    target.write_bytes(predictions.read_bytes())
    results = {
        "language": language,
        "subtask": LANGUAGES[language],
        "direction": direction,
        "train_words": record["data"]["sizes"]["train"],
        "dev_words": metrics["words"],
        "wer": 100 * metrics["wer"],  # the task's scale
        "cer": metrics["cer"],  # PER for g2p, CER over grapheme clusters for p2g
        "decoding": key,
        "steps": steps,  # dev WER after each step: one member, the ensemble (greedy), the beam
        "members": member_rows,
        "train_seconds": sum(m["train_seconds"] for m in member_rows),
        "eval_seconds": time.perf_counter() - began,
        "unknown_symbols": record["data"]["unknown_symbols"]["valid"],
        "baseline_dev_wer": BASELINE_DEV[language],
    }
    earlier = Path(directory) / "results.json"
    if earlier.exists():  # the same members' earlier test figures stay, unless this run replaces them
        before = json.loads(earlier.read_text(encoding="utf-8"))
        same_system = ([m["run"] for m in before.get("members", [])] == [m["run"] for m in member_rows]
                       and before.get("decoding") == key)  # fmt: skip
        for name, file in (("test", "predictions-test.tsv"), ("test_predictions", "predictions-test-covered.tsv")):
            if name in before and same_system:
                results[name] = before[name]
            elif name in before:  # another system's outputs: not this one's test figures
                (Path(directory) / file).unlink(missing_ok=True)
    if test_file is not None:
        scored = evaluate(runs[0], beam=beam if beam > 1 else None, ensemble=runs[1:] or None,
                          rescore=rescore or None, file=Path(test_file))  # fmt: skip
        test_key, test = next(iter(scored.items()))
        written = Path(runs[0].path) / f"predictions-{test_key}.tsv"
        covered = test.get("scored") is False  # a covered test file (spellings only): outputs, no figures
        target = Path(directory) / ("predictions-test-covered.tsv" if covered else "predictions-test.tsv")
        target.write_bytes(written.read_bytes())
        if covered:
            results["test_predictions"] = {"file": str(test_file), "words": test["words"], "output": str(target),
                                           "unknown_source_symbols": test["unknown_source_symbols"]}  # fmt: skip
        else:
            results["test"] = {"file": str(test_file), "words": test["words"], "wer": 100 * test["wer"],
                               "cer": test["cer"], "unknown_source_symbols": test["unknown_source_symbols"],
                               "baseline_test_wer": BASELINE_TEST[language]}  # fmt: skip
    atomic_write_json(Path(directory) / "results.json", results)
    return results


def test_files(test_dir: str | Path, languages: Sequence[str], directions: Sequence[str] = ("g2p",)) -> dict[str, Path]:
    """{language: its test file} under `test_dir`: `<subtask>/<language>_test.tsv` as in the task's data
    folder, or `<language>_test.tsv` directly in it; failing those, the covered `<language>_test.txt`
    (spellings only, as the task hands its test data out: decoded into predictions-test-covered.tsv, not
    scored). Every language needs one, and each must read as the task's format: a missing, empty or
    malformed file is a UserError before anything trains."""
    from dllab.data.sigmorphon import is_covered, read_task_pairs, read_task_words
    from dllab.errors import UserError

    out, missing = {}, []
    for language in languages:
        folders = [Path(test_dir) / LANGUAGES[language], Path(test_dir)]
        places = [f / f"{language}_test.{ext}" for ext in ("tsv", "txt") for f in folders]
        found = next((p for p in places if p.is_file()), None)
        if found is None:
            missing.append(f"{language} ({places[0]} or {places[1]}, or a covered {language}_test.txt there)")
            continue
        if is_covered(found):  # the readers' errors name the file and line
            read_task_words(found)
            if "p2g" in directions:
                raise UserError(f"{found}: a covered test file holds spellings only, so P2G cannot be decoded "
                                "from it: pass --direction g2p, or the test file with its phones")  # fmt: skip
        else:
            read_task_pairs(found)
        out[language] = found
    if missing:
        raise UserError(f"--test-dir {test_dir}: no test file for {len(missing)} language(s): {'; '.join(missing)}")
    return out


def run_sweep(languages: Sequence[str], directions: Sequence[str], root: str | Path,
              seeds: Sequence[int] | None = None, preset: str = "auto", overrides: Sequence[str] = (),
              beam: int | None = None, workers: int = 0, data_dir: str | None = None,
              r2l_seeds: Sequence[int] | None = None, epochs_scale: float = 1.0,
              test_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """One job per (direction, language), all in one pool, the costliest first: each trains the language's
    members one after another (`seeds`, or the preset's; finished ones skipped, interrupted ones resumed) and
    its right-to-left members (`r2l_seeds`, or the preset's unless `seeds` are given; they rerank the beam)
    and the preset's companions of another architecture (none with `seeds`; their beams and scores join the
    reranking),
    then decodes its dev split with them together (beam `beam`, or the preset's), so results appear language
    by language. `test_dir`: a folder with the languages' test files (`test_files`), each decoded like dev
    once its language is trained. Writes <root>/sweep-<directions>-<subtask>.json (members, beams, wall time).
    Returns {"<direction>/<language>": results}."""
    from dllab.p2g.presets import ENSEMBLES, resolve

    tests = test_files(test_dir, languages, directions) if test_dir is not None else {}
    jobs, members, beams = [], {}, {}
    for direction in directions:
        for language in languages:
            name = f"{direction}/{language}"
            folder = language_dir(root, direction, language)
            bare = member_config(language, direction, 0, "none", (), data_dir)
            size = resolve(bare, preset) if preset != "none" else ""
            plan = ENSEMBLES.get(size, {"seeds": (1,), "beam": 1})
            beams[name] = beam or plan["beam"]
            configs, r2l = [], []
            # explicit --seeds replace the preset's plan: right-to-left members only when asked for too
            backward = r2l_seeds if r2l_seeds is not None else (() if seeds else plan.get("r2l_seeds", ()))
            for seed in seeds or plan["seeds"]:
                cfg = member_config(language, direction, seed, preset, overrides, data_dir, epochs_scale)
                configs.append((str(folder / f"s{seed}"), cfg))
            for seed in backward if beams[name] > 1 else ():
                cfg = member_config(language, direction, seed, preset, overrides, data_dir, epochs_scale)
                r2l.append((str(folder / f"r2l-s{seed}"), replace_path(cfg, "data.reverse", True)))
            others = []  # the preset's companions: members of another architecture, none with --seeds
            companion = plan.get("companions") if not seeds and beams[name] > 1 else None
            if companion:
                # the companions' settings, then the user's overrides, then what makes them companions again
                settings = [f"--{k}={v}" for k, v in companion["settings"].items()]
                plan_seeds = [(x, False) for x in companion["seeds"]] + [(x, True) for x in companion["r2l_seeds"]]
                for seed, reverse in plan_seeds:
                    cfg = member_config(language, direction, seed, preset, [*settings, *overrides], data_dir,
                                        epochs_scale)  # fmt: skip
                    cfg = replace_path(replace_path(cfg, "arch", companion["settings"]["arch"]), "rollin", 0.0)
                    tag = f"{companion['name']}-{'r2l-' if reverse else ''}s{seed}"
                    others.append((str(folder / tag), replace_path(cfg, "data.reverse", reverse)))
            for path, cfg in [*configs, *r2l, *others]:
                _check_same_config(RunDir(path), cfg)
            members[name] = [path for path, _ in [*configs, *r2l, *others]]
            kwargs = {"directory": str(folder), "members": [(p, to_dict(c)) for p, c in configs],
                      "right_to_left": [(p, to_dict(c)) for p, c in r2l], "beam": beams[name],
                      "test_file": str(tests[language]) if language in tests else None,
                      "companions": [(p, to_dict(c)) for p, c in others]}  # fmt: skip
            jobs.append(Job(name, train_language, kwargs))
    # Costliest first (training words x epochs x members, scaled by model size), so no big job starts last.
    jobs.sort(key=lambda job: -sum(_cost(c) for _, c in job.kwargs["members"] + job.kwargs["right_to_left"]
                                   + job.kwargs["companions"]))  # fmt: skip
    began = time.perf_counter()
    results = run_jobs(jobs, workers)
    summary = {"directions": list(directions), "languages": list(languages), "members": members, "beams": beams,
               "workers": workers, "wall_seconds": time.perf_counter() - began}  # fmt: skip
    atomic_write_json(Path(root) / f"sweep-{'-'.join(directions)}-{_subtasks(languages)}.json", summary)
    return results


def _subtasks(languages: Sequence[str]) -> str:
    """"all", a subtask's name, or "custom": what a sweep's summary file is named after."""
    if set(languages) == set(LANGUAGES):
        return "all"
    return next((name for name, langs in SUBTASKS.items() if set(langs) == set(languages)), "custom")


def train_language(directory: str, members: list[tuple[str, dict[str, Any]]], beam: int, threads: int,
                   right_to_left: Sequence[tuple[str, dict[str, Any]]] = (), test_file: str | None = None,
                   companions: Sequence[tuple[str, dict[str, Any]]] = ()) -> dict:  # fmt: skip
    """A sweep job: train a language's members one after another, then score its dev split (and `test_file`)
    with them."""
    for path, config in [*members, *right_to_left, *companions]:
        train_member(path, config, threads)
    return evaluate_language(directory, [path for path, _ in members], beam, threads,
                             [path for path, _ in right_to_left], test_file,
                             [path for path, _ in companions])  # fmt: skip


def _cost(config: dict[str, Any]) -> float:
    from dllab.p2g.presets import train_words

    cfg = from_dict(P2GConfig, config)
    return train_words(cfg.data) * cfg.train.epochs * (cfg.model.hidden / 128) ** 2


def _check_same_config(run: RunDir, cfg: P2GConfig) -> None:
    """A member run made with other settings is not silently reused: the sweep says so, naming the run. The
    number of epochs counts too: resuming a finished run for more epochs would restart its decayed learning
    rate and replace its best checkpoint, and a run trained longer is not the one asked for."""
    if not run.exists():
        return
    from dllab.config import diff

    saved = run.read_config(P2GConfig)
    changed = [k for k in diff(saved, cfg) if k != "train.threads"]
    if changed:
        from dllab.errors import UserError

        raise UserError(f"{run.path}: made with other settings ({', '.join(changed)}); use another --runs folder "
                        "or delete the run")  # fmt: skip


def read_results(root: str | Path, direction: str) -> dict[str, dict[str, Any]]:
    """{language: results.json} of the languages a sweep root holds for `direction`, in the task's order."""
    out = {}
    for language in LANGUAGES:
        path = language_dir(root, direction, language) / "results.json"
        if path.exists():
            out[language] = json.loads(path.read_text(encoding="utf-8"))
    return out


def macro(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per subtask: macro WER / CER over its languages present, how many of them, the baseline's dev macro, and
    `wer_interval`: the 95% interval of the macro WER over dev sets of these sizes (`macro_interval`): 100 dev
    words a language leave a low macro WER about 2.5 points either way, so a smaller gap is not a finding."""
    out = {}
    for subtask, langs in SUBTASKS.items():
        rows = [results[lang] for lang in langs if lang in results]
        if rows:
            out[subtask] = {**_averages(rows, "dev_words"), "of": len(langs),
                            "baseline_dev_wer": BASELINE_MACRO_DEV[subtask],
                            "train_seconds": sum(r["train_seconds"] for r in rows)}  # fmt: skip
            tests = [r["test"] for r in rows if "test" in r]
            if tests:
                out[subtask]["test"] = {**_averages(tests, "words"), "baseline_test_wer": BASELINE_MACRO_TEST[subtask]}
    return out


def _averages(rows: Sequence[dict[str, Any]], words: str) -> dict[str, Any]:
    """Macro WER (x100) and CER of scored rows, the WER's 95% interval over sets of their sizes (`words`: the
    key holding each row's word count), and how many rows."""
    from dllab.seq2seq.metrics import macro_interval

    low, high = macro_interval([r["wer"] / 100 for r in rows], [r[words] for r in rows])
    return {"wer": sum(r["wer"] for r in rows) / len(rows), "cer": sum(r["cer"] for r in rows) / len(rows),
            "wer_interval": (100 * low, 100 * high), "languages": len(rows)}  # fmt: skip


def results_table(g2p: dict[str, dict[str, Any]], p2g: dict[str, dict[str, Any]]) -> tuple[list[str], list[list]]:
    """(header, rows) ready to print: per language, the baseline's dev WER, G2P WER / PER, P2G WER / CER (WER x100
    with 2 decimals, PER / CER as fractions with 4), training minutes of all its members; where a language was
    scored on its test file too (`--test-dir`), three more columns: the baseline's test WER and ours."""
    header = ["language", "subtask", "train words", "baseline G2P dev WER", "G2P dev WER", "G2P dev PER",
              "P2G dev WER", "P2G dev CER", "training min (G2P / P2G)"]  # fmt: skip
    with_test = any("test" in r for r in [*g2p.values(), *p2g.values()])
    if with_test:
        header += ["baseline G2P test WER", "G2P test WER", "P2G test WER"]
    rows = []
    for language in LANGUAGES:
        g, p = g2p.get(language), p2g.get(language)
        if g is None and p is None:
            continue
        words = (g or p)["train_words"]
        minutes = " / ".join(f"{r['train_seconds'] / 60:.1f}" if r else "—" for r in (g, p))
        rows.append([language, LANGUAGES[language], words, f"{BASELINE_DEV[language]:.2f}",
                     *(f"{r['wer']:.2f}" if r else "—" for r in (g,)), *(f"{r['cer']:.4f}" if r else "—" for r in (g,)),
                     *(f"{r['wer']:.2f}" if r else "—" for r in (p,)), *(f"{r['cer']:.4f}" if r else "—" for r in (p,)),
                     minutes])  # fmt: skip
        if with_test:
            rows[-1] += [f"{BASELINE_TEST[language]:.2f}",
                         *(f"{r['test']['wer']:.2f}" if r and "test" in r else "—" for r in (g, p))]  # fmt: skip
    return header, rows


def print_results(root: str | Path, languages: Sequence[str] | None = None) -> None:
    """The per-language table (G2P and P2G beside the baseline) and the macro averages, as text."""
    g2p, p2g = read_results(root, "g2p"), read_results(root, "p2g")
    if languages is not None:
        g2p = {k: v for k, v in g2p.items() if k in languages}
        p2g = {k: v for k, v in p2g.items() if k in languages}
    header, rows = results_table(g2p, p2g)
    widths = [max(len(_fmt(x)) for x in col) for col in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        cells = [_fmt(x).rjust(w) if i else _fmt(x).ljust(w) for i, (x, w) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(cells))
    for direction, results in (("G2P", g2p), ("P2G", p2g)):
        for subtask, m in macro(results).items():
            extra = "" if m["languages"] == m["of"] else f" ({m['languages']} of {m['of']} languages)"
            versus = f" vs the baseline's {m['baseline_dev_wer']:.2f}" if direction == "G2P" else ""
            rate = "PER" if direction == "G2P" else "CER"
            low, high = m["wer_interval"]
            print(f"{direction} {subtask} macro dev WER {m['wer']:.2f} (95% interval {low:.2f}-{high:.2f} for dev "
                  f"sets of this size){versus}, {rate} {m['cer']:.4f}{extra}; "
                  f"training {m['train_seconds'] / 60:.1f} min")
            if "test" in m:
                t = m["test"]
                versus = f" vs the baseline's {t['baseline_test_wer']:.2f}" if direction == "G2P" else ""
                extra = "" if t["languages"] == m["of"] else f" ({t['languages']} of {m['of']} languages)"
                low, high = t["wer_interval"]
                print(f"{direction} {subtask} macro test WER {t['wer']:.2f} (95% interval {low:.2f}-{high:.2f})"
                      f"{versus}, {rate} {t['cer']:.4f}{extra}")
    for direction, results in (("G2P", g2p), ("P2G", p2g)):
        covered = [lang for lang, r in results.items() if "test_predictions" in r]
        if covered:
            print(f"{direction} covered test files (spellings only, not scored): {', '.join(covered)}; outputs in "
                  f"{Path(root) / direction.lower()}/<language>/predictions-test-covered.tsv")
    for path in sorted(Path(root).glob("sweep*.json")):
        s = json.loads(path.read_text(encoding="utf-8"))
        print(f"{path.name}: {' and '.join(s['directions'])}, {len(s['languages'])} language(s) in one pool: "
              f"{s['wall_seconds'] / 60:.1f} min wall")


def _fmt(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else str(x)
