"""The softmax-temperature study against the notes' table (lecture 4)."""

import matplotlib.pyplot as plt
import pytest

from experiments.studies import softmax_temperature
from tests.experiments.studies import studies_testing


def test_last_digit_unit_reads_the_printed_precision():
  assert softmax_temperature.last_digit_unit('0.524') == pytest.approx(1e-3)
  assert softmax_temperature.last_digit_unit('9.9e-01') == pytest.approx(1e-2)
  assert softmax_temperature.last_digit_unit('4.5e-05') == pytest.approx(1e-6)


def _run():
  result = softmax_temperature.run(quick=True)
  plt.close(result.figure)
  return result


def test_study_agrees_with_the_notes_table():
  result = _run()
  # The worst entry: 1 - e^{-10} / 2 ~ 0.99995 against the printed 9.9e-01,
  # 0.995 units of its last digit (0.01).
  assert result.values['table_worst_units'] == pytest.approx(0.995, abs=1e-3)
  assert result.values['smallest_step'] >= 0.0
  assert result.values['distance_to_argmax_at_beta_1000'] < 1e-6
  assert [s.verdict for s in result.subclaims] == ['holds'] * 3
  assert result.verdict == 'holds'
  # A higher temperature is less confident: 1/(1 + e^{-0.1/T}) by hand.
  peaks = result.values['largest_probability_by_temperature']
  assert peaks['1.0'] == pytest.approx(0.52498, abs=1e-5)
  assert peaks['0.5'] > peaks['1.0'] > peaks['2.0']


def test_a_wrong_table_entry_flips_its_subclaim(monkeypatch):
  wrong = dict(softmax_temperature.NOTES_TABLE)
  wrong[2.0] = ('0.440', '0.560')  # Off by 1e-2: beyond one printed digit.
  monkeypatch.setattr(softmax_temperature, 'NOTES_TABLE', wrong)
  result = _run()
  assert result.subclaims[0].verdict == 'does not hold'
  assert result.verdict == 'does not hold'


@pytest.mark.slow
def test_quick_cli_writes_the_files(tmp_path):
  record = studies_testing.run_quick('softmax_temperature', tmp_path)
  assert record['verdict'] == 'holds'
  assert [s['verdict'] for s in record['subclaims']] == ['holds'] * 3
