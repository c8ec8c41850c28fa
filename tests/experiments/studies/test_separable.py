"""The separable study: the cost formula as checks, error ratios as claims."""

from fractions import Fraction

import matplotlib.pyplot as plt
import numpy as np
import pytest

from experiments.studies import separable
from experiments.studies import verdict
import nets
from tests.experiments.studies import studies_testing

_PRECONDITION = 'both alpha-1 nets trained (the worse mean test error, %)'


def _summary(alpha=1.0, is_separable=True, blocks=separable.BLOCKS):
  model = nets.create(
    'mobilenet_v1',
    num_classes=10,
    width_multiplier=alpha,
    blocks=blocks,
    separable=is_separable,
  )
  return nets.summarize(model, separable.INPUT_SHAPE)


@pytest.fixture(scope='module')
def summaries():
  """nets.summarize of alpha 1, alpha 0.25 and the twin (full blocks)."""
  return [_summary(), _summary(0.25), _summary(is_separable=False)]


def test_block_ratios_are_the_notes_formula(summaries):
  ratios = separable.block_ratios(summaries[0], summaries[2])
  # By hand: N = 64, 128, 128, 256 with D_K = 3.
  assert [r['N'] for r in ratios] == [64, 128, 128, 256]
  assert [r['M'] for r in ratios] == [32, 64, 128, 128]
  assert [r['D_F'] for r in ratios] == [14, 7, 7, 4]
  assert ratios[0]['measured'] == Fraction(1, 64) + Fraction(1, 9)
  assert ratios[3]['measured'] == Fraction(265, 2304)  # 1/256 + 1/9
  assert all(r['measured'] == r['formula'] for r in ratios)


def test_block_ratios_catch_a_mismatched_twin(summaries):
  # A "twin" at half width is not the same layers: the ratio is no longer
  # 1/N + 1/D_K^2, and the check must say so.
  ratios = separable.block_ratios(
    summaries[0], _summary(alpha=0.5, is_separable=False)
  )
  assert not any(r['measured'] == r['formula'] for r in ratios)


def test_twin_has_the_same_layers_with_full_convs(summaries):
  sep, std = summaries[0], summaries[2]
  sep_names = {r.name for r in sep.rows}
  std_names = {r.name for r in std.rows}
  assert {'dw1', 'pw1', 'dw4', 'pw4'} <= sep_names
  assert {'conv1', 'conv4'} <= std_names and 'dw1' not in std_names
  # Table 4's parameter ratio at this size: 9 M N against 9 M + M N per
  # block, stem and classifier shared.
  assert std.params == 538_602 and sep.params == 67_338


def test_arm_config_trains_the_named_arm():
  config = separable.arm_config(
    0.5, False, blocks=separable.BLOCKS, quick=True, seed=2
  )
  assert config.model == 'mobilenet_v1' and config.data.name == 'mnist'
  assert config.model_kw.to_dict() == {
    'width_multiplier': 0.5,
    'blocks': separable.BLOCKS,
    'separable': False,
  }
  assert config.checkpoint_every_steps == 0
  assert config.total_steps == separable.QUICK_STEPS and config.seed == 2


def test_seeds_and_thresholds_are_fixed_from_the_pilot():
  # Pilot log ratios 0.79 (sd 0.15) against log 1.25 = 0.22, and 0.96
  # (sd 0.22) against 0: t_4 * sd / sqrt(5) = 0.19 and 0.27, inside both.
  assert separable.PILOT_SEEDS == [5, 5]
  assert separable.SEEDS == (0, 1, 2, 3, 4)
  assert separable.MAX_ERROR_RATIO == 1.25
  assert separable.THIN_ERROR_RATIO == 1.0


def test_error_ratio_by_hand():
  # Arm a wrong on 20 of 100 examples in every seed, arm b on 10 of them.
  a = np.zeros((5, 100))
  a[:, :20] = 1
  b = np.zeros((5, 100))
  b[:, :10] = 1
  ratio, low, high = separable.error_ratio(a, b)
  assert ratio == pytest.approx(2.0)
  assert 1.0 < low < 2.0 < high < 4.0
  # Identical arms: every resample gives 1 (a point, which no claim takes).
  assert separable.error_ratio(b, b) == (1.0, 1.0, 1.0)
  with pytest.raises(ValueError, match='b with errors'):
    separable.error_ratio(a, np.zeros_like(a))


def _rows(summaries, rates, logged_off=0.0, images=1000):
  """Made-up arms (alpha 1, alpha 0.25, twin), 5 seeds x `images`."""
  rng = np.random.default_rng(0)
  rows = []
  for (label, alpha, is_sep), summary, rate in zip(
    (
      ('separable, alpha 1', 1.0, True),
      ('separable, alpha 0.25', 0.25, True),
      ('full-conv twin', 1.0, False),
    ),
    summaries,
    rates,
    strict=True,
  ):
    wrong = [rng.random(images) < rate for _ in range(5)]
    rows.append(
      {
        'label': label,
        'alpha': alpha,
        'separable': is_sep,
        'summary': summary,
        'wrong': wrong,
        'logged': [float(np.mean(w)) + logged_off for w in wrong],
        'images_per_s': 1000.0,
      }
    )
  return rows


def _summarize(rows):
  result = separable.summarize(rows, quick=False)
  plt.close(result.figure)
  return result


@pytest.mark.parametrize(
  ('rates', 'images', 'drop'),
  [
    ((0.029, 0.07, 0.013), 1000, 'does not hold'),  # 2.2x, as the pilot
    # 1.08x: on 1,000 images (some 70 and 65 errors) the test sample alone
    # leaves it open; on 20,000 it holds.
    ((0.014, 0.07, 0.013), 1000, 'inconclusive'),
    ((0.014, 0.07, 0.013), 20_000, 'holds'),
  ],
)
def test_the_error_ratio_decides_the_small_loss(summaries, rates, images, drop):
  result = _summarize(_rows(summaries, rates, images=images))
  assert [s.kind for s in result.subclaims] == ['check'] * 4 + ['claim'] * 2
  assert [s.verdict for s in result.subclaims[:4]] == ['passes'] * 4
  assert result.subclaims[4].verdict == drop
  assert result.subclaims[5].verdict == 'holds'  # 0.07 against alpha 1's.
  assert [p.met for p in result.preconditions] == [True]
  assert result.verdict == drop  # The other claim holds.
  assert result.subclaims[4].seeds == 5
  assert result.subclaims[4].seeds_why == separable.SEEDS_WHY
  assert result.values['mac_ratio_twin_over_separable'] == pytest.approx(
    19_228_288 / 2_348_480
  )
  # MACs(0.25) / MACs(1) = 187,760 / 2,348,480: a power of alpha of about
  # log(0.07995) / log(0.25) = 1.82.
  assert result.values['mac_power_of_alpha'] == pytest.approx(
    np.log(187_760 / 2_348_480) / np.log(0.25), rel=1e-6
  )
  assert 'e-' not in result.summary and 'load average' not in str(result.notes)


def test_untrained_nets_are_not_tested(summaries):
  result = _summarize(_rows(summaries, (0.88, 0.88, 0.86)))
  assert [p.met for p in result.preconditions] == [False]
  assert result.preconditions[0].measured == pytest.approx(88, abs=2)
  assert result.verdict == 'not tested'
  assert result.summary.startswith(f'Not tested: {_PRECONDITION}')


def test_a_thin_net_as_good_as_the_full_one_does_not_trade(summaries):
  result = _summarize(_rows(summaries, (0.03, 0.03, 0.013)))
  assert result.subclaims[5].verdict != 'holds'


def test_errors_the_trainer_did_not_log_stop_the_run(summaries):
  rows = _rows(summaries, (0.029, 0.07, 0.013), logged_off=0.01)
  with pytest.raises(verdict.CheckFailedError, match="the trainer's"):
    _summarize(rows)


@pytest.mark.slow
def test_quick_cli_records_checks_claims_and_the_precondition(tmp_path):
  record = studies_testing.run_quick('separable', tmp_path)
  assert record['format'] == 2
  subclaims = record['subclaims']
  assert [s['kind'] for s in subclaims] == ['check'] * 4 + ['claim'] * 2
  assert [s['verdict'] for s in subclaims[:4]] == ['passes'] * 4
  assert all(s['seeds'] == len(separable.SEEDS) for s in subclaims[4:])
  values = record['values']
  # Quick uses the block 64/1 alone: 1/64 + 1/9.
  assert values['block_ratios'] == pytest.approx([73 / 576])
  assert values['mac_ratio_twin_over_separable'] > separable.MIN_MAC_RATIO
  assert all(v > 0 for v in values['images_per_s'].values())
  # 20 steps train no net to 95%: the precondition is unmet, the headline
  # 'not tested' whatever the claims say.
  (pre,) = record['preconditions']
  assert pre['name'] == _PRECONDITION and pre['met'] is False
  assert record['verdict'] == 'not tested'
  assert 'load average' not in (tmp_path / 'separable.md').read_text()
