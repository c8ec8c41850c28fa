"""The softmax-temperature study against the notes' table (lecture 4)."""

import pytest

from experiments.studies import softmax_temperature
from tests.experiments.studies import studies_testing


def test_last_digit_unit_reads_the_printed_precision():
  assert softmax_temperature.last_digit_unit('0.524') == pytest.approx(1e-3)
  assert softmax_temperature.last_digit_unit('9.9e-01') == pytest.approx(1e-2)
  assert softmax_temperature.last_digit_unit('4.5e-05') == pytest.approx(1e-6)


def test_study_agrees_with_the_notes_table(tmp_path):
  result = softmax_temperature.run(quick=True)
  assert result.values['table_agrees'] is True
  assert result.values['monotone'] is True
  assert result.values['distance_to_argmax_at_beta_1000'] < 1e-6
  assert result.holds


def test_a_wrong_table_entry_is_caught(monkeypatch):
  wrong = dict(softmax_temperature.NOTES_TABLE)
  wrong[2.0] = ('0.440', '0.560')  # Off by 1e-2: beyond one printed digit.
  monkeypatch.setattr(softmax_temperature, 'NOTES_TABLE', wrong)
  result = softmax_temperature.run(quick=True)
  assert result.values['table_agrees'] is False and not result.holds


@pytest.mark.slow
def test_quick_cli_writes_the_files(tmp_path):
  record = studies_testing.run_quick('softmax_temperature', tmp_path)
  assert record['holds'] is True
