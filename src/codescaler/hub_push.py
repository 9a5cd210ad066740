"""Publishing a trained RM checkpoint: its model card, then the folder to the hub (layer L2).

``publish_checkpoint(folder, target)`` is what ``codescaler train --push-to-hub TARGET`` calls once the
checkpoint is saved. It (re)writes ``README.md`` from the folder's ``codescaler.json`` (``model_card``)
so the card always matches what was pushed, then sends the folder, leaving out training leftovers
(``checkpoint-*`` folders, tracker logs):

- ``TARGET`` a hub repo id (``user/name``): ``huggingface_hub.HfApi.create_repo`` (exist_ok) and
  ``upload_folder``, to ``endpoint`` when given (``HF_ENDPOINT`` otherwise), with the login token
  (``hf auth login`` or ``HF_TOKEN``).
- ``TARGET`` a ``file://`` URL: the same files copied into that folder (a local or mounted model
  store, and how the tests cover this path without a network).

Failure is one ``InputError`` naming the reason (offline: ``HF_HUB_OFFLINE`` set; no token; refused;
unreachable) and how to push the saved folder later; the local checkpoint is never touched.
"""

from __future__ import annotations

import fnmatch
import logging
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from codescaler.errors import InputError
from codescaler.model_card import write_model_card
from codescaler.rm_checkpoint import read_metadata

logger = logging.getLogger(__name__)

# Training leftovers that are not part of the model: intermediate checkpoints and tracker logs.
IGNORE_PATTERNS = ("checkpoint-*", "checkpoint-*/*", "runs/*", "*.lock", ".cache/*")


def publish_checkpoint(folder: str | Path, target: str, *, endpoint: str | None = None,
                       private: bool = False) -> str:
    """Write ``folder``'s model card and push ``folder`` to ``target`` (see the module docstring).

    Returns where it went (the repo URL, or the local folder). Raises ``InputError`` when the folder is
    not a codescaler checkpoint, or the push fails, with the reason and a later-push command.
    """
    folder = Path(folder)
    write_model_card(folder, read_metadata(folder))
    if target.startswith("file:"):
        return str(_copy_to_folder(folder, _file_url_path(target)))
    return _upload(folder, target, endpoint=endpoint, private=private)


def pushed_files(folder: Path) -> list[Path]:
    """The files of ``folder`` a push sends (relative paths, sorted), ``IGNORE_PATTERNS`` left out."""
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(fnmatch.fnmatch(rel.as_posix(), pat) for pat in IGNORE_PATTERNS):
            files.append(rel)
    return files


def _file_url_path(target: str) -> Path:
    parsed = urlparse(target)
    if parsed.netloc not in ("", "localhost") or not parsed.path:
        raise InputError(f"--push-to-hub: {target!r} is not a local file URL", field="--push-to-hub",
                         fix="use file:///absolute/folder, or a hub repo id such as user/name")
    return Path(unquote(parsed.path))


def _copy_to_folder(folder: Path, dest: Path) -> Path:
    if dest.resolve() == folder.resolve():
        raise InputError(f"--push-to-hub: {dest} is the checkpoint folder itself", field="--push-to-hub",
                         fix="name another folder")
    try:
        for rel in pushed_files(folder):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / rel, dest / rel)
    except OSError as err:
        raise InputError(f"--push-to-hub: cannot copy {folder} to {dest}: {err}", path=str(dest),
                         fix="choose a writable folder; the checkpoint itself is saved") from None
    logger.info("copied %s to %s", folder, dest)
    return dest


def _upload(folder: Path, repo_id: str, *, endpoint: str | None, private: bool) -> str:
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HFValidationError, LocalTokenNotFoundError
    from huggingface_hub.utils import validate_repo_id

    later = f"the checkpoint is saved in {folder}; push it later with `hf upload {repo_id} {folder}`"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise InputError(f"--push-to-hub: {repo_id!r} is not a hub repo id ({err})", field="--push-to-hub",
                         fix="use user/name, or file:///folder for a local target") from None
    if constants.HF_HUB_OFFLINE:
        raise InputError(f"cannot push to {repo_id}: the hub is offline here (HF_HUB_OFFLINE is set)",
                         field="--push-to-hub", fix=later)
    from huggingface_hub import errors as hub_errors

    # The HTTP client's errors: huggingface_hub 1.x re-exports httpx's; older ones use requests' (OSErrors).
    http_error: type[Exception] = getattr(hub_errors, "HTTPError", OSError)
    api = HfApi(endpoint=endpoint)
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                   ignore_patterns=list(IGNORE_PATTERNS),
                                   commit_message="codescaler: upload reward model checkpoint")
    except LocalTokenNotFoundError:
        raise InputError(f"cannot push to {repo_id}: no hub token (log in with `hf auth login` or set HF_TOKEN)",
                         field="--push-to-hub", fix=later) from None
    except (OSError, ValueError, http_error) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot push to {repo_id} at {endpoint or constants.ENDPOINT}: {reason}",
                         field="--push-to-hub", fix=later) from None
    logger.info("pushed %s to %s", folder, commit.repo_url)
    return str(commit.repo_url)
