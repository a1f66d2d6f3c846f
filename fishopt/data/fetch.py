"""Downloading the Kaggle fish set, when credentials and network allow.

Checked up front so the user learns in one line what is missing, rather than from a
kagglehub traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from fishopt.errors import FishoptError

KAGGLE_HANDLE = "crowww/a-large-scale-fish-dataset"


def has_credentials(env: dict[str, str] | None = None, home: Path | None = None) -> bool:
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return True
    if env.get("KAGGLE_API_TOKEN"):
        return True
    config_dir = Path(env.get("KAGGLE_CONFIG_DIR", home / ".kaggle"))
    return (config_dir / "kaggle.json").is_file() or (config_dir / "access_token").is_file()


def fetch_kaggle(handle: str = KAGGLE_HANDLE) -> Path:
    """Download (or reuse kagglehub's cache) and return the folder to pass as --data."""
    try:
        import kagglehub
    except ImportError:
        raise FishoptError("kagglehub is not installed: pip install kagglehub") from None
    if not has_credentials():
        raise FishoptError(
            "no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY, or put "
            "kaggle.json in ~/.kaggle/ (kaggle.com > Settings > API)"
        )
    try:
        return Path(kagglehub.dataset_download(handle))
    except Exception as exc:  # network, auth and API errors all end the same way for the user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FishoptError(f"could not download {handle}: {first}") from None
