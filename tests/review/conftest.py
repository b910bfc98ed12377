from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # runfolder

from runfolder import make_review_run  # noqa: E402


@pytest.fixture
def review_run(tmp_path):
    """(recipe, plan) of a run folder over the coal samples plus a document full of HTML/JS."""
    return make_review_run(tmp_path)
