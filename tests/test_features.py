"""Tests for codescaler.features / feature_cache / heads / head_training on tiny offline causal LMs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from codescaler.errors import InputError
from codescaler.extract import extract_code
from codescaler.feature_cache import FeatureCache
from codescaler.features import FeatureExtractor, FeatureSpec, load_backbone
from codescaler.heads import HeadSettings, fit_head, load_head
from codescaler.rm_checkpoint import RMMetadata, encode_rm_input_span
from codescaler.testing import build_tiny_model

PROBLEMS = [
    "Write `add(a, b)` returning the sum of a and b.\n>>> add(1, 2)\n3\n" * 3,
    "Return the reverse of the string s. — ¿Dónde? 两数之和",
]
CODES = [
    ["def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a - b\n", "def add(a, b):\n    return b + a\n",
     "def add(a, b):\n    return a + b\n"],  # a duplicate: computed once
    ["def rev(s):\n    return s[::-1]\n", "def rev(s):\n    return s\n", "def rev(s):\n    r = ''\n    for c in s:\n"
     "        r = c + r\n    return r\n"],
]


def _items() -> tuple[list[str], list[str]]:
    prompts, codes = [], []
    for p, cs in zip(PROBLEMS, CODES, strict=True):
        for c in cs:
            prompts.append(p)
            codes.append(c)
    return prompts, codes


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_lm"), arch="qwen2", kind="causal", seed=3, num_layers=3)


@pytest.fixture(scope="module")
def loaded(tiny_lm: Path) -> tuple:
    return load_backbone(str(tiny_lm), dtype="float32")


def _spec(tiny_lm: Path, sha: str, **kw) -> FeatureSpec:
    base = {"backbone": str(tiny_lm), "backbone_sha256": sha, "hidden_size": 32, "max_length": 256,
            "layers": (1, 3)}
    return FeatureSpec(**{**base, **kw})


def test_the_code_span_covers_exactly_the_code_tokens(loaded):
    _model, tok, _sha = loaded
    ids, start, end = encode_rm_input_span(tok, PROBLEMS[0], CODES[0][0], RMMetadata(max_length=256))
    assert tok.decode(ids[start:end]).strip() == CODES[0][0].strip()
    assert tok.decode(ids[end:]).startswith("<|im_end|>")
    empty = encode_rm_input_span(tok, PROBLEMS[0], "", RMMetadata(max_length=256))
    assert empty[1] == empty[2]


def test_shared_prefix_features_equal_the_unshared_computation(loaded, tiny_lm):
    model, tok, sha = loaded
    spec = _spec(tiny_lm, sha, without_problem=True)
    prompts, codes = _items()
    shared = FeatureExtractor(model, tok, spec, batch_size=2, prefix_sharing=True).compute(prompts, codes)
    alone = FeatureExtractor(model, tok, spec, batch_size=5, prefix_sharing=False).compute(prompts, codes)
    assert shared.shape == (len(codes), len(spec.names()))
    assert np.abs(shared[0] - shared[1]).max() > 1e-3      # the features differ at all
    np.testing.assert_allclose(shared, alone, atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(shared[0], shared[3])     # duplicates get the same row


def test_likelihood_features_match_a_full_softmax(loaded, tiny_lm):
    model, tok, sha = loaded
    spec = _spec(tiny_lm, sha, layers=(), pooling=())
    prompts, codes = _items()
    rows = FeatureExtractor(model, tok, spec).compute(prompts, codes)
    names = spec.names()
    for k in (0, 5):
        ids, start, end = encode_rm_input_span(tok, prompts[k], codes[k], RMMetadata(max_length=256))
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        logp = torch.log_softmax(logits, -1)
        lp = logp[torch.arange(start - 1, end - 1), torch.tensor(ids[start:end])]
        assert rows[k, names.index("lp_mean")] == pytest.approx(float(lp.mean()), abs=1e-4)
        assert rows[k, names.index("lp_min")] == pytest.approx(float(lp.min()), abs=1e-4)
        assert rows[k, names.index("lp_sum")] == pytest.approx(float(lp.sum()), abs=1e-3)


def test_stopping_at_an_earlier_layer_gives_the_same_hidden_features(loaded, tiny_lm):
    model, tok, sha = loaded
    prompts, codes = _items()
    full = FeatureExtractor(model, tok, _spec(tiny_lm, sha, layers=(1, 3))).compute(prompts, codes)
    early_spec = _spec(tiny_lm, sha, layers=(1,), likelihood=False, facts=False)
    early = FeatureExtractor(model, tok, early_spec)
    assert early._stop == 1
    np.testing.assert_allclose(early.compute(prompts, codes), full[:, : 2 * 32], atol=1e-5)


def test_the_cache_resumes_and_never_recomputes(loaded, tiny_lm, tmp_path):
    model, tok, sha = loaded
    spec = _spec(tiny_lm, sha)
    prompts, codes = _items()
    fx = FeatureExtractor(model, tok, spec)
    cache = FeatureCache(tmp_path, spec)
    assert cache.fill(fx, prompts[:3], codes[:3], chunk=2) == 3
    again = FeatureCache(tmp_path, spec)                    # a new process: reads the shards
    assert len(again) == 3
    assert again.fill(fx, prompts, codes, chunk=2) == 3     # 7 items, 6 distinct, 3 cached
    np.testing.assert_allclose(again.get(prompts, codes), fx.compute(prompts, codes), atol=1e-5)


def test_a_truncated_shard_is_detected_and_recomputed(loaded, tiny_lm, tmp_path):
    model, tok, sha = loaded
    spec = _spec(tiny_lm, sha)
    prompts, codes = _items()
    fx = FeatureExtractor(model, tok, spec)
    FeatureCache(tmp_path, spec).fill(fx, prompts, codes, chunk=4)
    shard = sorted((tmp_path / spec.key[:24]).glob("part-*.npz"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    cache = FeatureCache(tmp_path, spec)
    lost = 6 - len(cache)
    assert lost > 0 and shard.with_suffix(".bad").exists()
    assert cache.fill(fx, prompts, codes) == lost
    assert len(cache) == 6


def test_features_of_another_backbone_are_never_mixed_in(loaded, tiny_lm, tmp_path):
    _model, _tok, sha = loaded
    spec = _spec(tiny_lm, sha)
    other = _spec(tiny_lm, "0" * 64)
    FeatureCache(tmp_path, spec)
    assert FeatureCache(tmp_path, other).folder != FeatureCache(tmp_path, spec).folder
    folder = FeatureCache(tmp_path, spec).folder
    (folder / "spec.json").write_text(json.dumps(other.to_dict()))
    with pytest.raises(InputError, match="another feature spec"):
        FeatureCache(tmp_path, spec)
    with pytest.raises(InputError, match="weights"):
        FeatureExtractor.load(other)


def test_rows_of_another_precision_are_never_mixed_in(loaded, tiny_lm, tmp_path):
    """bf16 rows (a CPU with AMX, say) and float32 rows of the same spec live apart, and an extractor
    running in one precision cannot fill the other's cache."""
    import copy

    from codescaler.head_training import LazyExtractor

    model, tok, sha = loaded
    spec = _spec(tiny_lm, sha)
    prompts, codes = _items()
    fp32 = FeatureCache(tmp_path, spec)
    bf16 = FeatureCache(tmp_path, spec, "bfloat16")
    assert fp32.folder != bf16.folder and bf16.folder.name.endswith(".bfloat16")
    fx16 = FeatureExtractor(copy.deepcopy(model).to(torch.bfloat16), tok, spec)
    with pytest.raises(InputError, match="holds float32 rows and the extractor runs in bfloat16"):
        fp32.fill(fx16, prompts, codes)
    assert bf16.fill(fx16, prompts[:2], codes[:2]) == 2 and len(FeatureCache(tmp_path, spec)) == 0
    # the lazy extractor knows its precision before loading anything (a tiny model: float32 unless asked)
    lazy = LazyExtractor(str(tiny_lm), lambda width, digest: spec, batch_size=2, dtype=None)
    assert lazy.precision == "float32" == lazy.get().precision
    assert LazyExtractor(str(tiny_lm), lambda width, digest: spec, batch_size=2, dtype="bf16").precision == "bfloat16"


def test_a_spec_field_this_version_cannot_compute_is_refused():
    with pytest.raises(InputError, match="features.attention_rollout"):
        FeatureSpec.from_dict({"backbone": "x", "backbone_sha256": "", "hidden_size": 8, "attention_rollout": True})
    with pytest.raises(InputError, match="features.version"):
        FeatureSpec.from_dict({"backbone": "x", "backbone_sha256": "", "hidden_size": 8, "version": 99})


def test_a_linear_head_learns_a_separable_preference_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    n, d = 400, 6
    chosen = rng.normal(size=(n, d)).astype(np.float32)
    rejected = rng.normal(size=(n, d)).astype(np.float32)
    rejected[:, 2] -= 1.5                                    # column 2 says which is better
    groups = [f"p{i // 4}" for i in range(n)]
    columns = [f"c{i}" for i in range(d)]
    for kind in ("linear", "mlp"):
        head = fit_head(chosen, rejected, groups, columns, HeadSettings(kind=kind, l2_grid=(1e-3, 1.0), folds=3))
        assert head.report["cv_accuracy"] > 0.8 and head.report["train_accuracy"] > 0.8
        head.save(tmp_path)
        back = load_head(tmp_path, head.to_metadata())
        np.testing.assert_allclose(back.score(chosen), head.score(chosen), atol=1e-6)
    with pytest.raises(InputError, match="head.columns_sha256"):
        load_head(tmp_path, {**head.to_metadata(), "columns_sha256": "0" * 64})
    with pytest.raises(InputError, match="head.kind"):
        load_head(tmp_path, {**head.to_metadata(), "kind": "transformer"})


def _pairs_file(path: Path) -> Path:
    rows = []
    for p, cs in zip(PROBLEMS, CODES, strict=True):
        for k, bad in enumerate(cs[1:3]):
            rows.append({"prompt": p, "chosen": f"```python\n{cs[0]}```", "rejected": f"```python\n{bad}```",
                         "task_id": f"t{PROBLEMS.index(p)}", "k": k})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "codescaler", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=600)


def test_train_head_end_to_end_and_every_consumer_scores_the_checkpoint(tiny_lm, tmp_path):
    pairs = _pairs_file(tmp_path / "pairs.jsonl")
    out = tmp_path / "rm"
    common = ["--backbone", str(tiny_lm), "--layers", "1", "3", "--cache-dir", str(tmp_path / "cache"),
              "--max-length", "256", "--dtype", "float32"]
    done = _cli("features", "--pairs", str(pairs), *common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "programs computed" in done.stdout
    trained = _cli("train", "--head", "linear", "--pairs", str(pairs), "--output-dir", str(out), "--l2", "0.1",
                   *common, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "0 programs" not in trained.stderr
    meta = json.loads((out / "codescaler.json").read_text())
    assert meta["format_version"] == 2 and meta["head"]["kind"] == "linear"
    assert meta["manifest"]["stage_seconds"]["features"] < 5   # the cache served every row
    assert (out / "head.safetensors").is_file() and (out / "README.md").is_file()
    assert (out / "tokenizer.json").is_file()

    from codescaler.integrations.trl import CodeScalerReward
    from codescaler.scorer import Scorer

    scorer = Scorer.load(str(out), dtype="float32")
    responses = [f"```python\n{c}```" for c in CODES[0][:3]] + ["no code here"]
    scores = scorer.score([PROBLEMS[0]] * 4, responses)
    assert [s.valid for s in scores] == [True, True, True, False]
    assert len({round(s.raw_score, 6) for s in scores[:3]}) == 3   # distinct scores
    assert scores[3].reward == 0.0 and all(s.reward > 0 for s in scores[:3])
    cache = FeatureCache(tmp_path / "cache", scorer._features[0].spec)
    head = scorer._features[1]
    code = extract_code(responses[0], mode="strict").code
    expected = head.score(cache.get([PROBLEMS[0]], [code]))[0]
    assert scores[0].raw_score == pytest.approx(float(expected), abs=1e-4)  # training rows = scoring rows

    reward = CodeScalerReward(scorer=scorer)
    rewards = reward(prompts=[PROBLEMS[0]] * 2, completions=responses[:2])
    assert rewards == pytest.approx([scores[0].reward, scores[1].reward], abs=1e-5)

    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"r{k}", "prompt": PROBLEMS[0], "response": r}) + "\n"
                            for k, r in enumerate(responses)))
    scored = _cli("score", "--rm", str(out), "--input", str(items), "--output", str(tmp_path / "s.jsonl"),
                  "--dtype", "float32", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    rows = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().split("\n") if x]
    assert rows[0]["raw_score"] == pytest.approx(scores[0].raw_score, abs=1e-4)


def test_a_head_checkpoint_on_other_weights_is_refused_with_one_line(tiny_lm, tmp_path):
    pairs = _pairs_file(tmp_path / "pairs.jsonl")
    out = tmp_path / "rm"
    trained = _cli("train", "--head", "linear", "--pairs", str(pairs), "--output-dir", str(out), "--l2", "0.1",
                   "--backbone", str(tiny_lm), "--layers", "3", "--cache-dir", str(tmp_path / "cache"),
                   "--max-length", "256", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    meta = json.loads((out / "codescaler.json").read_text())
    meta["head"]["features"]["backbone_sha256"] = "f" * 64
    (out / "codescaler.json").write_text(json.dumps(meta))
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": "a", "prompt": "p", "response": "```python\nx = 1\n```"}) + "\n")
    refused = _cli("score", "--rm", str(out), "--input", str(items), "--output", str(tmp_path / "o.jsonl"),
                   cwd=tmp_path)
    assert refused.returncode == 2
    assert "features.backbone_sha256" in refused.stderr and "Traceback" not in refused.stderr
    errors = [line for line in refused.stderr.splitlines()
              if line.strip() and not line.startswith(("INFO", "WARNING", "Loading"))]
    assert len(errors) == 1, refused.stderr


def test_the_committed_feature_head_checkpoint_is_self_consistent():
    from codescaler.rm_checkpoint import read_metadata

    folder = Path(__file__).resolve().parents[1] / "src/codescaler/assets/feature_head_rm"
    meta = read_metadata(folder)
    assert meta.format_version == 2 and meta.head is not None and meta.base_model == "qwen2.5-coder-0.5b-instruct"
    spec = FeatureSpec.from_dict(meta.head["features"])
    head = load_head(folder, meta.head)
    assert head.columns == spec.names() and len(head.columns) == meta.head["n_columns"]
    assert "humaneval" not in json.dumps(meta.manifest["data"]).lower()      # trained on TRAIN sources only
    assert (folder / "README.md").read_text().startswith("---\nlibrary_name: codescaler")


def test_free_columns_are_not_shrunk_so_a_heavily_regularised_head_falls_back_to_them():
    rng = np.random.default_rng(1)
    n = 300
    chosen, rejected = rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32)
    rejected[:, 0] -= 1.0                                    # column "lp" carries the signal
    groups = [f"p{i}" for i in range(n)]
    shrunk = fit_head(chosen, rejected, groups, ["lp", "a", "b"], HeadSettings(l2_grid=(1e4,)))
    free = fit_head(chosen, rejected, groups, ["lp", "a", "b"], HeadSettings(l2_grid=(1e4,), free=("lp",)))
    assert abs(float(shrunk.params["w"][0])) < 1e-3
    assert float(free.params["w"][0]) > 0.3 and float(free.params["w"][1:].abs().max()) < 1e-3


def test_train_free_names_groups_or_columns_and_refuses_unknown_ones_before_any_forward(tiny_lm, tmp_path):
    pairs = _pairs_file(tmp_path / "pairs.jsonl")
    common = ["--head", "linear", "--pairs", str(pairs), "--backbone", str(tiny_lm), "--layers", "1",
              "--cache-dir", str(tmp_path / "cache"), "--max-length", "256", "--dtype", "float32", "--l2", "10"]
    bad = _cli("train", *common, "--output-dir", str(tmp_path / "bad"), "--free", "lp_mean", "bogus", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--free 'bogus' is neither a feature column nor a group" in bad.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npz"))
    out = tmp_path / "rm"
    done = _cli("train", *common, "--output-dir", str(out), "--free", "likelihood", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    block = json.loads((out / "codescaler.json").read_text())["head"]
    head = load_head(out, block)
    spec_groups = FeatureSpec.from_dict(block["features"]).groups()
    free = [head.columns.index(c) for c in spec_groups["likelihood"]]
    penalised = [i for i in range(len(head.columns)) if i not in free]
    # at l2 = 10 the penalised weights are shrunk far below the free likelihood weights
    w = head.params["w"].abs()
    assert float(w[free].max()) > 10 * float(w[penalised].max())


def test_a_composed_stack_scores_exactly_what_the_two_level_computation_scores():
    from codescaler.heads import compose_stack

    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    x2 = rng.normal(size=(60, 5)).astype(np.float32)
    x2[:, 0] -= 1.0
    groups = [f"p{i // 3}" for i in range(60)]
    level1 = fit_head(x, x2, groups, [f"c{i}" for i in range(5)], HeadSettings(l2_grid=(0.1,), folds=3))
    member_c, member_r = rng.normal(size=(60, 1)).astype(np.float32), rng.normal(size=(60, 1)).astype(np.float32)
    top = fit_head(np.column_stack([level1.score(x), member_c]), np.column_stack([level1.score(x2), member_r]),
                   groups, ["level1", "rm:m"], HeadSettings(l2_grid=(0.1,), folds=3))
    one = compose_stack(level1, top)
    assert one.columns == [f"c{i}" for i in range(5)] + ["rm:m"]
    for rows, member in ((x, member_c), (x2, member_r)):
        expected = top.score(np.column_stack([level1.score(rows), member]))
        np.testing.assert_allclose(one.score(np.column_stack([rows, member])), expected, rtol=1e-4, atol=1e-4)
    mlp = fit_head(x, x2, groups, [f"c{i}" for i in range(5)], HeadSettings(kind="mlp", l2_grid=(0.1,), folds=2, epochs=2))
    with pytest.raises(InputError, match="head.kind"):
        compose_stack(mlp, top)


def test_a_head_stacked_with_an_rm_trains_loads_scores_and_refuses_other_member_weights(tiny_lm, tmp_path):
    member = build_tiny_model(tmp_path / "member_rm", arch="qwen2", kind="seqcls", seed=5)
    pairs = _pairs_file(tmp_path / "pairs.jsonl")
    common = ["--backbone", str(tiny_lm), "--layers", "3", "--cache-dir", str(tmp_path / "cache"),
              "--max-length", "256", "--dtype", "float32", "--l2", "0.1", "--folds", "2"]
    refused = _cli("train", "--head", "linear", "--pairs", str(pairs), "--output-dir", str(tmp_path / "x"),
                   "--stack", str(member), *common, cwd=tmp_path)
    assert refused.returncode == 2 and "--eval-pairs" in refused.stderr and "Traceback" not in refused.stderr
    out = tmp_path / "stacked"
    trained = _cli("train", "--head", "linear", "--pairs", str(pairs), "--eval-pairs", str(pairs),
                   "--output-dir", str(out), "--stack", str(member), *common, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "stacked with rm:" in trained.stdout
    meta = json.loads((out / "codescaler.json").read_text())
    spec = FeatureSpec.from_dict(meta["head"]["features"])
    assert spec.rm_scores == (str(member),) and len(spec.rm_scores_sha256[0]) == 64
    assert spec.names()[-1] == f"rm:{member}"
    assert spec.without_rm_scores().key == FeatureSpec.from_dict(
        {k: v for k, v in meta["head"]["features"].items() if not k.startswith("rm_scores")}).key
    assert meta["manifest"]["head"]["stack"]["heldout_pairs"] == 4

    from codescaler.scorer import Scorer

    scorer = Scorer.load(str(out), dtype="float32")
    member_scorer = Scorer.load(str(member), dtype="float32")
    codes = CODES[0][:3]
    scores = scorer.score_codes([PROBLEMS[0]] * 3, codes)
    extractor, head = scorer._features
    base = FeatureExtractor(extractor.model, extractor.tokenizer, spec.without_rm_scores()).compute([PROBLEMS[0]] * 3, codes)
    expected = head.score(np.column_stack([base, member_scorer.score_codes([PROBLEMS[0]] * 3, codes)]))
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)   # backbone features + the member's own score
    members = Scorer.load(str(out), dtype="bfloat16")._features[0].rm_scorers()
    assert next(members[0].model.parameters()).dtype == torch.bfloat16     # --dtype reaches the stacked members

    (member / "model.safetensors").write_bytes((member / "model.safetensors").read_bytes() + b" ")
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": "a", "prompt": "p", "response": "```python\nx = 1\n```"}) + "\n")
    other = _cli("score", "--rm", str(out), "--input", str(items), "--output", str(tmp_path / "o.jsonl"), cwd=tmp_path)
    assert other.returncode == 2 and "features.rm_scores_sha256" in other.stderr and "Traceback" not in other.stderr


def test_the_committed_stacked_checkpoint_names_the_shipped_lora_rm_by_its_exact_weights():
    from codescaler.feature_backbone import weights_sha256
    from codescaler.rm_checkpoint import read_metadata
    from codescaler.scorer import default_rm_path, resolve_checkpoint

    folder = Path(resolve_checkpoint("stacked"))
    assert folder == default_rm_path("stacked") and Path(resolve_checkpoint("feature-head")).name == "feature_head_rm"
    meta = read_metadata(folder)
    spec = FeatureSpec.from_dict(meta.head["features"])
    head = load_head(folder, meta.head)
    assert head.columns == spec.names() and head.columns[-1] == "rm:default"
    # the stack's weights were fitted on these LoRA weights: replacing the default RM must refit the stack
    assert spec.rm_scores == ("default",) and spec.rm_scores_sha256 == (weights_sha256(default_rm_path()),)
    stack = meta.manifest["head"]["stack"]
    assert stack["heldout_pairs"] > 100 and all(w > 0 for w in stack["weights"])
    assert "humaneval" not in json.dumps(meta.manifest["data"]).lower()
