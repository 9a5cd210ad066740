"""codescaler.bon as a library: pinned figures from a scores file, the content-keyed score cache, and
one scoring path shared with the pairwise benchmarks. Real sandbox runs, tiny offline RMs, real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bon_toy import VARIANTS, write_toy
from codescaler import data
from codescaler.bench import pairwise
from codescaler.bon import BonSettings, run_bon
from codescaler.bon_signals import candidate_item, score_candidates
from codescaler.cli import main
from codescaler.errors import InputError
from codescaler.models import build_tiny_model
from codescaler.records import ExtractMode, Language, Pair
from codescaler.rerank import Strategy
from codescaler.rm_checkpoint import InputFormat, RMMetadata, write_metadata
from codescaler.scorer import Scorer

# Rewards chosen so every strategy's pick at N=6 (the whole pool) is known by hand:
# toy/0: s0 tops the RM -> rm, tests+rm, hybrid, cascade (1 run) all pick s0 (correct);
# toy/1: s1 (fails the examples) tops the RM, then s2 (passes only the examples): rm picks s1, tests+rm
#        and hybrid pick s2, cascade runs s1 then s2 (2 runs) and takes s2: all wrong;
# toy/2 (no examples): s5 tops the RM -> rm correct; tests, hybrid, cascade, tests+rm skip it.
REWARDS = {"toy/0": [0.9, 0.8, 0.7, 0.6, 0.0, 0.5], "toy/1": [0.4, 0.95, 0.9, 0.2, 0.0, 0.3],
           "toy/2": [0.1, 0.2, 0.3, 0.4, 0.0, 0.9]}


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bon")
    paths = write_toy(root)
    with open(root / "scores.jsonl", "w", encoding="utf-8") as handle:
        for task_id, rewards in REWARDS.items():
            for i, reward in enumerate(rewards):
                handle.write(json.dumps({"task_id": task_id, "candidate_id": f"s{i}", "reward": reward,
                                         "seconds": 0.5}) + "\n")
    return {**paths, "scores": root / "scores.jsonl"}


def _rm(folder: Path, seed: int) -> Path:
    build_tiny_model(folder, arch="qwen3", seed=seed)
    write_metadata(folder, RMMetadata(input_format=InputFormat.CHAT_TEMPLATE, max_length=256, backbone="tiny-qwen3"))
    return folder


def test_bon_with_a_scores_file_gives_exactly_the_hand_computed_picks(
        toy: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODESCALER_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    # --rm names nothing loadable: a scores file that covers every candidate needs no model
    assert main(["bon", "--problems", str(toy["problems"]), "--candidates", str(toy["candidates"]),
                 "--verdicts", str(toy["verdicts"]), "--scores", str(toy["scores"]), "--rm", str(tmp_path / "none"),
                 "--n", "6", "--seeds", "3", "--workers", "2", "--output-dir", str(out)]) == 0
    rows = {r["strategy"]: r for r in json.loads((out / "report.json").read_text(encoding="utf-8"))["results"]}
    expected = {"random": 100 * 2 / 6, "oracle": 100.0, "rm": 100 * 2 / 3, "tests": 100 * 2 / 3,
                "tests+rm": 50.0, "hybrid": 50.0, "cascade": 50.0}
    assert {s: r["pass_at_1"] for s, r in rows.items()} == pytest.approx(expected, abs=1e-3)
    assert all(r["std"] == 0.0 for r in rows.values())  # N=6 draws the whole pool on every seed
    assert rows["cascade"]["executed_per_problem"] == 1.5
    assert rows["hybrid"]["executed_per_problem"] == 3.0
    assert rows["rm"]["model_seconds_per_problem"] == pytest.approx(6 * 0.5)
    assert not list(out.glob("scores-*.jsonl"))


def test_run_bon_returns_one_record_per_candidate_with_its_signals(toy: dict[str, Path], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODESCALER_CACHE", str(tmp_path / "cache"))
    done = run_bon(BonSettings(problems=toy["problems"], candidates=toy["candidates"], verdicts=toy["verdicts"],
                               scores=toy["scores"], output_dir=tmp_path / "out", n_values=(2, 6), seeds=4,
                               strategies=(Strategy.RM, Strategy.TESTS_RM), workers=2))
    records = {(r.task_id, r.candidate_id): r for r in done.candidates}
    assert len(records) == 18
    assert records[("toy/1", "s1")].reward == 0.95 and records[("toy/1", "s1")].visible_all is False
    assert records[("toy/0", "s2")].visible_status == "passed" and records[("toy/0", "s2")].visible_passed == 2
    assert records[("toy/0", "s4")].visible_status == "no_code"
    assert records[("toy/2", "s0")].visible_status is None  # no examples: nothing run
    assert done.result("rm", 6).pass_at_1 == pytest.approx(2 / 3)
    assert done.result(Strategy.TESTS_RM, 6).pass_at_1 == pytest.approx(0.5)
    assert (tmp_path / "out" / "report.json") in done.paths.values()


def test_bad_settings_are_refused_before_anything_is_read(tmp_path: Path) -> None:
    settings = BonSettings(problems=tmp_path / "missing.jsonl", candidates=tmp_path / "missing.jsonl",
                           output_dir=tmp_path / "out", strategies=(Strategy.GENERATED_TESTS,))
    with pytest.raises(InputError, match="--generated-tests"):
        run_bon(settings)
    with pytest.raises(InputError, match="--n"):
        BonSettings(problems=tmp_path, candidates=tmp_path, n_values=(0, 4)).validate()
    assert not (tmp_path / "out").exists()


def test_retraining_into_the_same_folder_invalidates_the_score_cache(toy: dict[str, Path], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODESCALER_CACHE", str(tmp_path / "cache"))
    rm = _rm(tmp_path / "rm", seed=3)
    settings = BonSettings(problems=toy["problems"], candidates=toy["candidates"], verdicts=toy["verdicts"],
                           model=str(rm), output_dir=tmp_path / "out", n_values=(6,), seeds=2,
                           strategies=(Strategy.RM,))
    first = {(r.task_id, r.candidate_id): r.raw_score for r in run_bon(settings).candidates}
    assert len(set(first.values())) > 3  # the scores differ at all

    # the same checkpoint again: everything comes from the cache, the model is not loaded
    def no_load(*_args: object, **_kwargs: object) -> Scorer:
        raise AssertionError("the model was loaded although every score was cached")

    monkeypatch.setattr(Scorer, "load", no_load)
    again = {(r.task_id, r.candidate_id): r.raw_score for r in run_bon(settings).candidates}
    assert again == first
    monkeypatch.undo()
    monkeypatch.setenv("CODESCALER_CACHE", str(tmp_path / "cache"))

    _rm(rm, seed=11)  # "retrained" into the same folder: same path, other weights
    retrained = {(r.task_id, r.candidate_id): r.raw_score for r in run_bon(settings).candidates}
    assert len(list((tmp_path / "out").glob("scores-*.jsonl"))) == 2
    changed = [k for k, v in retrained.items() if v is not None and v != first[k]]
    assert changed, "the stale scores of the old checkpoint were reused"


def test_pairwise_and_bon_score_identical_items_identically(toy: dict[str, Path], tmp_path: Path) -> None:
    scorer = Scorer.load(str(_rm(tmp_path / "rm", seed=5)), batch_size=4)
    problems = {p.task_id: p for p in data.read_problems(toy["problems"])}
    cands = data.read_candidates(toy["candidates"])
    settings = BonSettings(problems=toy["problems"], candidates=toy["candidates"], output_dir=tmp_path / "out")
    rows, _ = score_candidates(settings, problems, cands, scorer=scorer)
    bon_scores = [rows[(c.task_id, c.candidate_id)]["raw_score"] for c in cands]
    assert len({s for s in bon_scores if s is not None}) > 5  # the scores differ at all
    assert sum(s is None for s in bon_scores) == 3  # s4 of each task has no code

    # the same (problem, response) items as preference pairs: every candidate against s0
    pairs = [Pair(problems[c.task_id].prompt, c.response or "", VARIANTS[0].format(k=2), language=Language.PYTHON)
             for c in cands]
    chosen = pairwise.score_rows(scorer.score_codes, [(p.prompt, p.chosen, p.language, p.is_code) for p in pairs],
                                 "code", ExtractMode.STRICT)
    assert [s.raw_score for s in chosen] == pytest.approx(bon_scores, abs=1e-5)
    # ... and through the Scorer's own item path, in another order and batch
    items = [candidate_item(problems[c.task_id], c) for c in reversed(cands)]
    direct = list(reversed(scorer.score_items(items)))
    assert [s.raw_score for s in direct] == pytest.approx(bon_scores, abs=1e-5)
    assert [s.reward for s in direct] == pytest.approx([rows[(c.task_id, c.candidate_id)]["reward"] for c in cands],
                                                       abs=1e-5)


def test_logprob_strategy_picks_the_most_likely_program_and_caches_it(toy: dict[str, Path], tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from codescaler.bench.baselines import LogProbScorer
    from codescaler.extract import item_program

    monkeypatch.setenv("CODESCALER_CACHE", str(tmp_path / "cache"))
    lm = build_tiny_model(tmp_path / "lm", arch="qwen2", kind="causal")
    settings = BonSettings(problems=toy["problems"], candidates=toy["candidates"], verdicts=toy["verdicts"],
                           output_dir=tmp_path / "out", n_values=(6,), seeds=2, workers=2,
                           strategies=(Strategy.LOGPROB,), logprob_model=str(lm), dtype="float32")
    done = run_bon(settings)
    problems = {p.task_id: p for p in data.read_problems(toy["problems"])}
    scorer = LogProbScorer(str(lm), dtype="float32")
    expected = 0.0
    for task_id in REWARDS:
        records = [r for r in done.candidates if r.task_id == task_id]
        cands = [c for c in data.read_candidates(toy["candidates"]) if c.task_id == task_id]
        programs = [item_program(candidate_item(problems[task_id], c)) for c in cands]
        assert [r.logprob is None for r in records] == [p is None for p in programs]  # s4 has no code
        valid = [i for i, p in enumerate(programs) if p is not None]
        values = scorer.score_codes([problems[task_id].prompt] * len(valid), [programs[i] for i in valid])
        assert [records[i].logprob for i in valid] == pytest.approx(values, abs=1e-4)
        best = max(values)
        tied = [records[valid[k]] for k, v in enumerate(values) if abs(v - best) < 1e-6]
        expected += sum(r.correct for r in tied) / len(tied) / len(REWARDS)
    assert done.result(Strategy.LOGPROB, 6).pass_at_1 == pytest.approx(expected, abs=1e-4)
    cache = list((tmp_path / "out").glob("logprob-*.jsonl"))
    assert len(cache) == 1 and len(cache[0].read_text().splitlines()) == 18
    again = run_bon(settings)   # served from the cache: no row appended
    assert len(cache[0].read_text().splitlines()) == 18
    assert again.result(Strategy.LOGPROB, 6).pass_at_1 == done.result(Strategy.LOGPROB, 6).pass_at_1


def test_score_cache_keys_name_the_dtype_auto_picks_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scores cached on a CPU with native bf16 (where "auto" is bfloat16 for the 0.5B RM) are not reused
    on an AVX2 CPU (float32), and an explicit dtype is its own key."""
    import torch

    from codescaler.model_device import dtype_label

    here = dtype_label(None, "cpu")
    assert here == dtype_label("auto", "cpu") == f"auto/cpu/{torch.backends.cpu.get_cpu_capability()}"
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512_BF16_SOMEWHERE_ELSE")
    assert dtype_label(None, "cpu") != here
    assert dtype_label("bf16", "cpu") == dtype_label("bfloat16", None) == "torch.bfloat16"
    assert dtype_label("float32", "cpu") != dtype_label("bf16", "cpu")


def test_target_device_names_the_device_a_model_runs_on_and_samplers_share_the_dtype_names() -> None:
    import torch

    from codescaler.errors import InputError
    from codescaler.model_device import target_device
    from codescaler.sampling import _resolve_dtype

    assert target_device("cpu") == torch.device("cpu") and target_device(torch.device("cpu")).type == "cpu"
    assert target_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert _resolve_dtype("fp32", "cpu") == torch.float32 and _resolve_dtype("auto", "cpu") == torch.bfloat16
    with pytest.raises(InputError, match="unknown dtype 'int3'.*use auto, float32, bfloat16 or float16"):
        _resolve_dtype("int3", "cpu")


def test_a_head_rm_with_likelihood_features_gives_the_logprob_strategy_from_its_own_pass(
        toy: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--rm`` a head checkpoint on the log-prob model's weights: the ``logprob`` values of the programs
    its max length does not cut come from the RM's pass (no second forward), equal to the log-prob
    scorer's; the cut ones get the log-prob scorer's own pass."""
    import torch

    from codescaler.bench.baselines import LogProbScorer
    from codescaler.extract import item_program
    from codescaler.feature_spec import FeatureSpec
    from codescaler.features import load_backbone
    from codescaler.head_training import save_head_checkpoint
    from codescaler.heads import Head
    from codescaler.rm_checkpoint import rm_input_length

    monkeypatch.setenv("CODESCALER_CACHE", str(tmp_path / "cache"))
    lm = build_tiny_model(tmp_path / "lm", arch="qwen2", kind="causal", seed=5)
    problems = {p.task_id: p for p in data.read_problems(toy["problems"])}
    cands = data.read_candidates(toy["candidates"])
    programs = [item_program(candidate_item(problems[c.task_id], c)) for c in cands]
    _net, tokenizer, sha = load_backbone(str(lm), dtype="float32")
    meta = RMMetadata(input_format=InputFormat.CHAT_TEMPLATE, max_length=4096)   # the extractor's input format
    lengths = sorted({rm_input_length(tokenizer, problems[c.task_id].prompt, p, meta)
                      for c, p in zip(cands, programs, strict=True) if p is not None})
    limit = lengths[len(lengths) // 2]       # about half the programs fit, the longer ones are cut
    spec = FeatureSpec(backbone=str(lm), backbone_sha256=sha, hidden_size=32, max_length=limit, layers=(1,))
    columns = list(spec.names())
    head = Head(kind="linear", columns=columns, mean=torch.zeros(len(columns)), std=torch.ones(len(columns)),
                params={"w": torch.linspace(-1, 1, len(columns))})
    rm = save_head_checkpoint(tmp_path / "rm", head, spec, manifest={})
    settings = BonSettings(problems=toy["problems"], candidates=toy["candidates"], verdicts=toy["verdicts"],
                           output_dir=tmp_path / "out", n_values=(6,), seeds=2, workers=2, model=str(rm),
                           strategies=(Strategy.RM, Strategy.LOGPROB), logprob_model=str(lm), dtype="float32")
    done = run_bon(settings)

    fits = [p is not None and rm_input_length(tokenizer, problems[c.task_id].prompt, p, meta) <= limit
            for c, p in zip(cands, programs, strict=True)]
    assert 0 < sum(fits) < sum(p is not None for p in programs)
    cache = next((tmp_path / "out").glob("logprob-*.jsonl"))
    rows = {(r["task_id"], r["candidate_id"]): r for r in map(json.loads, cache.read_text().splitlines())}
    assert len(rows) == len(cands)
    assert [bool(rows[(c.task_id, c.candidate_id)].get("from_rm_pass")) for c in cands] == fits
    valid = [i for i, p in enumerate(programs) if p is not None]
    expected = LogProbScorer(str(lm), dtype="float32").score_codes(
        [problems[cands[i].task_id].prompt for i in valid], [programs[i] for i in valid])
    by_key = {(r.task_id, r.candidate_id): r for r in done.candidates}
    got = [by_key[(cands[i].task_id, cands[i].candidate_id)].logprob for i in valid]
    assert got == pytest.approx(expected, abs=1e-4)
