"""The softmax-temperature study against the notes' table (lecture 4).

Every sub-claim is a check (an exact computation), so the headline is
'checks pass'; a wrong table entry fails its check, which stops the run: in
a child process, the CLI prints one error line, exits 1 and leaves the
files already in its folder as they were.
"""

import os
import subprocess
import sys

import matplotlib.pyplot as plt
import pytest

from experiments.studies import softmax_temperature
from experiments.studies import verdict
from tests.experiments.studies import studies_testing

_ROOT = os.path.dirname(
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)


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
  assert [s.kind for s in result.subclaims] == ['check'] * 3
  assert [s.verdict for s in result.subclaims] == ['passes'] * 3
  assert result.verdict == verdict.CHECKS_PASS == 'checks pass'
  assert result.preconditions == ()
  # A higher temperature is less confident: 1/(1 + e^{-0.1/T}) by hand.
  peaks = result.values['largest_probability_by_temperature']
  assert peaks['1.0'] == pytest.approx(0.52498, abs=1e-5)
  assert peaks['0.5'] > peaks['1.0'] > peaks['2.0']


def test_a_wrong_table_entry_fails_its_check(monkeypatch):
  wrong = dict(softmax_temperature.NOTES_TABLE)
  wrong[2.0] = ('0.440', '0.560')  # Off by 1e-2: beyond one printed digit.
  monkeypatch.setattr(softmax_temperature, 'NOTES_TABLE', wrong)
  with pytest.raises(verdict.CheckFailedError, match="the notes' table"):
    _run()


@pytest.mark.slow
def test_quick_cli_writes_the_files(tmp_path):
  record = studies_testing.run_quick('softmax_temperature', tmp_path)
  assert record['format'] == 2 and record['preconditions'] == []
  assert record['verdict'] == 'checks pass'
  assert [s['kind'] for s in record['subclaims']] == ['check'] * 3
  assert [s['verdict'] for s in record['subclaims']] == ['passes'] * 3


# The CLI with one table entry wrong: the study module patched in the child
# before `python -m experiments.studies` runs.
_FAILING_RUN = """
import runpy, sys
from experiments.studies import softmax_temperature as study
study.NOTES_TABLE = {**study.NOTES_TABLE, 2.0: ('0.440', '0.560')}
sys.argv = ['experiments.studies', 'softmax_temperature', '--quick',
            '--out_dir', sys.argv[1]]
runpy.run_module('experiments.studies', run_name='__main__', alter_sys=True)
"""


@pytest.mark.slow
def test_a_failing_check_exits_1_and_writes_nothing(tmp_path):
  good = tmp_path / 'softmax_temperature.json'
  good.write_text('{"the last good": "record"}')
  result = subprocess.run(
    [sys.executable, '-c', _FAILING_RUN, str(tmp_path)],
    cwd=_ROOT,
    env=studies_testing.child_env(),
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert result.returncode == 1, result.stdout + result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  assert 'softmax_temperature: check failed: "sm_beta' in lines[0]
  assert 'nothing written' in lines[0]
  assert sorted(os.listdir(tmp_path)) == ['softmax_temperature.json']
  assert good.read_text() == '{"the last good": "record"}'
