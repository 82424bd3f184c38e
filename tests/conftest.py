"""Test configuration: offline, isolated caches, albumentations quiet; shared fixtures."""
from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tests use one torch thread: tiny models run fastest so, and threads stall on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def repo() -> Path:
    return REPO


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary working directory (relative paths of a run, e.g. mlflow.db, land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
