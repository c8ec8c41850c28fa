"""The warmup study: its pilot arithmetic, its measures and its verdicts.

The verdicts are checked on stand-in runs (no training); the slow test runs
`--quick` and asserts only what holds at that size: the files, the kinds of
the sub-claims and the precondition's name (30 steps train no net, so every
run ends near chance there).
"""

import pytest

from experiments.studies import verdict
from experiments.studies import warmup
from tests.experiments.studies import studies_testing


def test_diverged_step_reads_the_trainers_message():
  message = (
    'loss is nan at step 17: training stopped without saving this state; '
    'no checkpoint was saved yet'
  )
  assert warmup.diverged_step(message) == 17
  assert warmup.diverged_step('parameters are not finite') == -1


def test_diverged_is_nan_or_ending_at_chance():
  assert warmup.is_diverged(17, warmup.CHANCE_ERROR)
  assert warmup.is_diverged(None, 89.77)  # A dead net: the largest class.
  assert not warmup.is_diverged(None, 71.5)  # The worst pilot run that learned.


def test_the_rate_is_the_pilots_smallest_diverging_one():
  assert warmup.smallest_diverging_rate(warmup.PILOT) == warmup.LR == 4.0
  # 0 of 3 at 2.83 is not most; 2 of 4 is not most either (a tie).
  assert warmup.smallest_diverging_rate({1.0: (2, 4), 2.0: (3, 5)}) == 2.0


def test_seeds_to_resolve_by_hand():
  # k = n: the Clopper-Pearson lower end is 0.025 ** (1 / n): 0.478 at 5
  # seeds, 0.541 at 6.
  assert warmup.seeds_to_resolve(1.0, 0.5) == 6
  # 80%: 12 of 15 gives [0.519, 0.957]; 11 of 14 gives [0.492, 0.953], and
  # from 15 to 24 seeds every round(0.8 n) of n excludes 0.5.
  assert warmup.seeds_to_resolve(0.8, 0.5) == 15
  assert warmup.seeds_to_resolve(0.5, 0.5) == 24  # Never: up to the cap.


def test_the_seed_count_is_the_pilots_and_apart_from_it():
  n, why = warmup.seeds_needed()
  assert n == 15 and tuple(range(n)) == warmup.SEEDS
  assert 'from 15 seeds on' in why and 'needs 5' in why
  assert not set(warmup.SEEDS) & set(range(100, 105))  # The pilot's seeds.


def test_arms_differ_only_in_the_warmup_and_share_the_decay():
  a = warmup.arm_config(lr=4.0, warmup_steps=0, seed=1, steps=200)
  b = warmup.arm_config(lr=4.0, warmup_steps=35, seed=1, steps=200)
  assert a.model_kw.norm == 'batch' and a.schedule == 'step'
  assert tuple(a.schedule_kw.boundaries) == (100, 150)
  assert a.schedule_kw.decay_factor == 0.1 and a.optimizer == 'momentum'
  b.warmup_steps = 0
  assert a.to_dict() == b.to_dict()


def test_checks_pass_and_a_different_decay_fails_them(monkeypatch):
  checks = warmup.checks(warmup.STEPS, warmup.WARMUP_STEPS)
  assert [c.kind for c in checks] == ['check', 'check']
  assert [c.estimate for c in checks] == [0.0, 0.0]
  config = warmup.arm_config

  def skewed(**kw):  # The warmup arm decays later: a bug the checks catch.
    out = config(**kw)
    if kw['warmup_steps']:
      out.schedule_kw.boundaries = (120, 150)
    return out

  monkeypatch.setattr(warmup, 'arm_config', skewed)
  with pytest.raises(verdict.CheckFailedError, match='same rate'):
    warmup.checks(warmup.STEPS, warmup.WARMUP_STEPS)


def _runs(errors):
  return [
    {'diverged': warmup.is_diverged(None, e), 'train_error': e} for e in errors
  ]


def test_subclaims_follow_the_stand_in_runs():
  # Without warmup 12 of 15 die (89.8%); with warmup every seed trains.
  none = _runs([89.8] * 12 + [40.0, 30.0, 50.0])
  warm = _runs([5.0 + i for i in range(15)])
  claims = warmup.subclaims({'none': none, 'warmup': warm}, 35)
  assert [c.kind for c in claims] == ['claim'] * 3
  assert [c.verdict for c in claims] == ['holds'] * 3
  assert claims[0].estimate == pytest.approx(80.0)
  assert claims[0].ci_low == pytest.approx(51.9, abs=0.1)  # 12 of 15, exact.
  assert claims[1].estimate == 0.0 and claims[1].ci_high < 50
  assert all(c.seeds_why == warmup.SEEDS_WHY for c in claims)
  # Warmup dies too: it prevents nothing and ends no better.
  claims = warmup.subclaims({'none': none, 'warmup': _runs([89.9] * 15)}, 35)
  assert [c.verdict for c in claims] == ['holds'] + ['does not hold'] * 2
  assert claims[2].ci_low >= -100 and claims[2].ci_high <= 100


def test_the_same_difference_in_every_seed_is_a_share_of_seeds():
  # Both arms die to the same class in every seed: a t interval would be a
  # point; the claim becomes the share of seeds over the threshold.
  runs = _runs([89.77] * 15)
  claims = warmup.subclaims({'none': runs, 'warmup': runs}, 35)
  assert claims[2].interval.startswith('exact binomial')
  assert claims[2].estimate == 0.0 and claims[2].verdict == 'does not hold'


def test_an_unmet_precondition_makes_it_not_tested():
  # Without warmup only 6 of 15 diverge: the regime was not reached.
  none = _runs([89.8] * 6 + [20.0] * 9)
  warm = _runs([5.0 + i for i in range(15)])
  results = {'none': none, 'warmup': warm}
  claims = warmup.subclaims(results, 35)
  pres = warmup.preconditions(results)
  assert [p.met for p in pres] == [False] and pres[0].measured == 40.0
  assert verdict.headline(claims, pres) == 'not tested'
  summary = warmup.describe(results, claims, pres, 35)
  assert summary.startswith('Not tested: ' + pres[0].name)
  assert 'diverged in 6 of 15 seeds' in summary and 'e-0' not in summary


@pytest.mark.slow
def test_quick_cli_writes_the_files(tmp_path):
  record = studies_testing.run_quick('warmup', tmp_path)
  assert record['format'] == 2
  kinds = [s['kind'] for s in record['subclaims']]
  assert kinds == ['check', 'check', 'claim', 'claim', 'claim']
  assert [s['verdict'] for s in record['subclaims'][:2]] == ['passes'] * 2
  assert all(s['seeds'] == 5 for s in record['subclaims'][2:])
  assert [p['name'] for p in record['preconditions']] == [
    f'lr {warmup.LR:g} without warmup diverges in most seeds (% diverged)'
  ]
  results = record['values']['results']
  assert [len(results[arm]) for arm in ('none', 'warmup')] == [5, 5]
  for runs in results.values():
    for r in runs:
      assert 0 <= r['train_error'] <= 100
      assert r['diverged'] == warmup.is_diverged(r['nan_at'], r['train_error'])
