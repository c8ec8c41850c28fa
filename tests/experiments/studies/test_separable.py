"""The separable study: the notes' 1/N + 1/D_K^2 against counted MACs."""

from fractions import Fraction

import matplotlib.pyplot as plt
import numpy as np
import pytest

from experiments.studies import separable
import nets
from tests.experiments.studies import studies_testing


def _summary(alpha=1.0, is_separable=True, blocks=separable.BLOCKS):
  model = nets.create(
    'mobilenet_v1',
    num_classes=10,
    width_multiplier=alpha,
    blocks=blocks,
    separable=is_separable,
  )
  return nets.summarize(model, separable.INPUT_SHAPE)


def test_block_ratios_are_the_notes_formula():
  ratios = separable.block_ratios(_summary(), _summary(is_separable=False))
  # By hand: N = 64, 128, 128, 256 with D_K = 3.
  assert [r['N'] for r in ratios] == [64, 128, 128, 256]
  assert [r['M'] for r in ratios] == [32, 64, 128, 128]
  assert [r['D_F'] for r in ratios] == [14, 7, 7, 4]
  assert ratios[0]['measured'] == Fraction(1, 64) + Fraction(1, 9)
  assert ratios[3]['measured'] == Fraction(265, 2304)  # 1/256 + 1/9
  assert all(r['measured'] == r['formula'] for r in ratios)


def test_block_ratios_catch_a_mismatched_twin():
  # A "twin" at half width is not the same layers: the ratio is no longer
  # 1/N + 1/D_K^2, and the check must say so.
  ratios = separable.block_ratios(
    _summary(), _summary(alpha=0.5, is_separable=False)
  )
  assert not any(r['measured'] == r['formula'] for r in ratios)


def test_twin_has_the_same_layers_with_full_convs():
  sep, std = _summary(), _summary(is_separable=False)
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
  assert config.checkpoint_every_steps == 0 and config.total_steps == 20
  assert config.seed == 2


def _rows(twin_accuracy, thin_accuracy=(0.90, 0.91, 0.89)):
  """Made-up accuracies over three seeds for alpha 1, 0.25 and the twin."""
  rows = []
  for label, alpha, is_sep, acc in (
    ('separable, alpha 1', 1.0, True, (0.97, 0.968, 0.972)),
    ('separable, alpha 0.25', 0.25, True, thin_accuracy),
    ('standard conv twin, alpha 1', 1.0, False, twin_accuracy),
  ):
    summary = _summary(alpha, is_sep)
    rows.append(
      {
        'label': label,
        'alpha': alpha,
        'separable': is_sep,
        'summary': summary,
        'params': summary.params,
        'macs': summary.macs,
        'images_per_s': 1000.0,
        'accuracy': list(acc),
      }
    )
  return rows


def test_accuracy_slopes_by_hand():
  # Two widths: the slope is the difference over the alpha gap, per seed.
  slopes = separable.accuracy_slopes(
    [1.0, 0.25], np.array([[0.97, 0.96], [0.90, 0.93]])
  )
  np.testing.assert_allclose(slopes, [0.07 / 0.75, 0.03 / 0.75])


@pytest.mark.parametrize(
  ('twin_accuracy', 'drop_verdict'),
  [
    ((0.98, 0.979, 0.981), 'holds'),  # ~1 point, seeds agree
    ((1.0, 0.999, 1.0), 'does not hold'),  # ~3 points
    ((0.98, 1.0, 0.975), 'inconclusive'),  # seeds disagree
  ],
)
@pytest.mark.slow
def test_drop_subclaim_follows_its_paired_interval(twin_accuracy, drop_verdict):
  result = separable.summarize(_rows(twin_accuracy), quick=False)
  plt.close(result.figure)
  verdicts = [s.verdict for s in result.subclaims]
  assert verdicts[2] == drop_verdict
  assert verdicts[:2] == ['holds', 'holds'] and verdicts[3:] == ['holds'] * 2
  drops = np.array(twin_accuracy) - np.array([0.97, 0.968, 0.972])
  np.testing.assert_allclose(result.values['accuracy_drop'], drops)
  assert result.subclaims[2].estimate == pytest.approx(drops.mean())
  assert result.subclaims[2].seeds == 3
  assert result.values['mac_ratio_twin_over_separable'] == pytest.approx(
    19_228_288 / 2_348_480
  )


def test_width_trend_flips_when_thin_nets_are_as_good():
  rows = _rows((0.98, 0.979, 0.981), thin_accuracy=(0.98, 0.97, 0.99))
  result = separable.summarize(rows, quick=False)
  plt.close(result.figure)
  assert result.subclaims[4].verdict != 'holds'
  # MACs(0.25) / MACs(1) = 187,760 / 2,348,480: a power of alpha of about
  # log(0.07995) / log(0.25) = 1.82.
  assert result.values['mac_power_of_alpha'] == pytest.approx(
    np.log(187_760 / 2_348_480) / np.log(0.25), rel=1e-6
  )


@pytest.mark.slow
def test_quick_cli_measures_the_ratio(tmp_path):
  record = studies_testing.run_quick('separable', tmp_path)
  values = record['values']
  assert values['formula_exact'] is True
  # Quick uses blocks 64/1 and 128/2: 1/64 + 1/9 and 1/128 + 1/9.
  assert values['block_ratios'] == pytest.approx([73 / 576, 137 / 1152])
  assert values['block_ratios'] == values['block_formula']
  assert values['mac_ratio_twin_over_separable'] > separable.MIN_MAC_RATIO
  assert all(v > 0 for v in values['images_per_s'].values())
  verdicts = [s['verdict'] for s in record['subclaims']]
  # The counted sub-claims hold at any size; the accuracies of 20 steps
  # are not asserted.
  assert verdicts[:2] == ['holds', 'holds'] and verdicts[3] == 'holds'
