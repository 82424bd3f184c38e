"""Test configuration: offline, isolated caches, albumentations quiet; shared fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Synthetic datasets are cached in a per-session directory, not the user's cache."""
    os.environ["ROBUSTMSA_CACHE"] = str(tmp_path_factory.mktemp("robustmsa-cache"))


@pytest.fixture()
def repo() -> Path:
    return REPO
