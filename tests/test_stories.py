"""Rasa's own test stories and data validation, as CI runs them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot.settings import PROJECT_ROOT, TRAINING_DATA_DIRS
from ops import runner


@pytest.mark.model
def test_test_stories_predict_every_action(assistant, tmp_path):
    model = runner.latest_model()
    result = subprocess.run(
        [sys.executable, "-m", "rasa", "test", "core", "--stories", "tests/stories", "--model", str(model),
         "--fail-on-prediction-errors", "--out", str(tmp_path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, env=runner.child_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_training_data_validates_without_warnings():
    result = subprocess.run(
        [sys.executable, "-m", "rasa", "data", "validate", "--fail-on-warnings", "--data", *TRAINING_DATA_DIRS,
         "--domain", "domain.yml", "--config", "config.yml"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, env=runner.child_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
