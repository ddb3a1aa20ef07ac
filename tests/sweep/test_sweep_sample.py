"""The architecture sweep's fixed sample: capture == eager on every layer, same keys, same outputs.

Each type runs in a worker subprocess (see :mod:`tests.sweep.runner`): one type that hangs or
crashes fails its own test only. Known failures are listed in :mod:`tests.sweep.known` with
their reason and run as strict xfails, so a fix shows up as an unexpected pass.
"""

import os

import pytest

from .known import KNOWN
from .runner import run_all
from .sample import SAMPLE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def results():
    pytest.importorskip("transformers")
    return {r["type"]: r for r in run_all(list(SAMPLE), ROOT, timeout=90.0, jobs=1)}


@pytest.mark.parametrize(
    "model_type",
    [pytest.param(t, marks=pytest.mark.xfail(strict=True, reason=KNOWN[t])) if t in KNOWN else t for t in SAMPLE],
)
def test_capture_matches_eager(results, model_type):
    result = results[model_type]
    assert result["status"] == "PASS", f"{result['status']} {result.get('cause')}: {result.get('detail')}"
