"""The separable study: the notes' 1/N + 1/D_K^2 against counted MACs."""

from fractions import Fraction

import matplotlib.pyplot as plt
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
  config = separable.arm_config(0.5, False, blocks=separable.BLOCKS, quick=True)
  assert config.model == 'mobilenet_v1' and config.data.name == 'mnist'
  assert config.model_kw.to_dict() == {
    'width_multiplier': 0.5,
    'blocks': separable.BLOCKS,
    'separable': False,
  }
  assert config.checkpoint_every_steps == 0 and config.total_steps == 20


def _rows(twin_accuracy):
  rows = []
  for label, alpha, is_sep, acc in (
    ('separable, alpha 1', 1.0, True, 0.97),
    ('separable, alpha 0.25', 0.25, True, 0.90),
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
        'accuracy': acc,
      }
    )
  return rows


@pytest.mark.parametrize(
  ('twin_accuracy', 'holds'), [(0.98, True), (1.0, False)]
)
def test_verdict_follows_the_accuracy_drop(twin_accuracy, holds):
  result = separable.summarize(_rows(twin_accuracy), quick=False)
  plt.close(result.figure)
  assert result.holds is holds
  assert result.values['formula_exact'] is True
  assert result.values['accuracy_drop'] == pytest.approx(twin_accuracy - 0.97)
  assert result.values['mac_ratio_twin_over_separable'] == pytest.approx(
    19_228_288 / 2_348_480
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
