"""Datasets from the Hugging Face hub through ``datasets.load_dataset`` (when the machine is online)."""

from __future__ import annotations

import logging
import os
from typing import Any

from codescaler.data.sources import dataset_info
from codescaler.errors import InputError
from codescaler.extras import require

logger = logging.getLogger(__name__)


def load_from_hub(name: str, split: str | None = None) -> Any:
    """The raw hub dataset for a named dataset that has a hub id (``DATASETS[name].hub_id``).

    Offline (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set) or on any connection error this raises
    ``InputError`` that points to the local copies (``--data-dir`` / ``CODESCALER_DATA``) instead.
    """
    info = dataset_info(name)
    if info.hub_id is None:
        raise InputError(f"dataset {name!r} has no Hugging Face hub id", field="name",
                         fix="load it from the local data folder: --data-dir DIR or CODESCALER_DATA=DIR")
    local_fix = (f"read the local copy instead: codescaler data {name} --data-dir DIR "
                 "(or set CODESCALER_DATA=DIR to the public data folder)")
    if any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
           for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        raise InputError(f"cannot load {info.hub_id!r} from the hub: offline mode is set (HF_HUB_OFFLINE)",
                         fix=local_fix)
    require("data", "datasets")
    import datasets  # deferred: heavy, and only this path needs it

    try:
        return datasets.load_dataset(info.hub_id, split=split)
    except (ConnectionError, OSError, TimeoutError) as err:
        raise InputError(f"cannot load {info.hub_id!r} from the hub: {type(err).__name__}: {err}",
                         fix=local_fix) from err
    except Exception as err:  # datasets wraps network failures in its own exception types
        if "connect" in str(err).lower() or "offline" in str(err).lower() or "resolve" in str(err).lower():
            raise InputError(f"cannot load {info.hub_id!r} from the hub: {err}", fix=local_fix) from err
        raise
