"""The shared skeleton: report (the files), page, readable, arms, figures.

An old-format study's page is byte for byte what it always was (a page
written before the split, kept here as text); a format-2 page opens with
its plain lead and shows checks, preconditions, claims, the figure, the
measured and protocol tables, notes and command in that order, its numbers
without scientific notation (a huge ratio in words); `readable`'s rules
against hand-computed strings; the fallback lead for each headline; the
skeleton's modules import neither `report` nor any study (no circles);
`report` still gives every name the studies use; `arms.make_config` builds
what the studies build by hand.
"""

import ast
import json
import math
import os
import re

import pytest

from experiments import studies
from experiments.configs import mnist1d
from experiments.studies import arms
from experiments.studies import figures
from experiments.studies import page
from experiments.studies import readable
from experiments.studies import report
from experiments.studies import verdict
from tests.experiments.studies import studies_testing

OLD_PAGE = [
  '# made_up',
  '',
  '**Claim** (a source): A claim.',
  '',
  '**Verdict: inconclusive.** Summary x6.7e-06.',
  '',
  '| sub-claim | estimate | 95% interval | threshold (claim side) | '
  'interval from | verdict |',
  '|---|---|---|---|---|---|',
  '| A \\| beats B. | 5.708 | [5.151, 6.326] | > 2 ("much faster": 2x) '
  '| paired t over 3 seeds; 3 seed(s) | **holds** |',
  '| C stays small. | 6.703e-06 | [4.715e-06, inf] | < 0.01 (a '
  'hundredth) | log t; 3 seed(s) | **inconclusive** |',
  '',
  '![made_up](made_up.png)',
  '',
  '| arm | value | ok |',
  '|---|---|---|',
  '| relu | 0.1235 | True |',
  '| tanh | 3.913e+07 | (1, 2) |',
  '',
  '**Protocol: the paper scaled down.**',
  '',
  '| aspect | paper (cite) | this study | why it differs |',
  '|---|---|---|---|',
  '| architecture | paper | ours | - |',
  '| data | paper | ours | - |',
  '| optimizer and learning-rate selection | paper | ours | - |',
  '| metric | paper | ours | - |',
  '| budget | paper | ours | - |',
  '| runs/seeds | paper | ours | - |',
  '| extra | x\\|y | z | w |',
  '',
  '- note one',
  '- note | two',
  '',
  '**Design changed after a result was seen:** changed it.',
  '',
  'Command: `python -m experiments.studies made_up`',
  '',
  'Size: full. Wall time: 12.3 s on M.',
  '',
]


def _protocol(extra=()):
  return [[a, 'paper', 'ours', '-'] for a in report.PROTOCOL_ASPECTS] + list(
    extra
  )


def _old_result() -> report.Result:
  subclaims = [
    verdict.Subclaim(
      claim='A | beats B.',
      estimate=5.708,
      ci_low=5.151,
      ci_high=6.326,
      threshold=2.0,
      direction='above',
      seeds=3,
      interval='paired t over 3 seeds',
      threshold_why='"much faster": 2x',
    ),
    verdict.Subclaim(
      claim='C stays small.',
      estimate=6.703e-06,
      ci_low=4.715e-06,
      ci_high=math.inf,
      threshold=0.01,
      direction='below',
      seeds=3,
      interval='log t',
      threshold_why='a hundredth',
    ),
  ]
  return report.Result(
    figure=None,
    columns=('arm', 'value', 'ok'),
    rows=[('relu', 0.123456, True), ('tanh', 39127076.5, (1, 2))],
    subclaims=subclaims,
    summary='Summary x6.7e-06.',
    protocol=_protocol([['extra', 'x|y', 'z', 'w']]),
    notes=('note one', 'note | two'),
    redesign='changed it.',
  )


def _page(result, quick=False) -> str:
  return page.study_page(
    result,
    name='made_up',
    claim='A claim.',
    source='a source',
    command='python -m experiments.studies made_up',
    wall_time_s=12.34,
    quick=quick,
    machine='M',
  )


def test_an_old_format_page_is_what_it_always_was():
  assert _page(_old_result()) == '\n'.join(OLD_PAGE)


SEEDS_WHY = 'pilot: sd 0.2 over 3 seeds; seeds_for gives 5'


def _format_2_result(lead='', caption='') -> report.Result:
  fig, ax = figures.new_figure()
  ax.plot([0, 1], [0, 1])
  subclaims = [
    verdict.check(
      'An identity holds to round-off.',
      2.5e-9,
      threshold=1e-6,
      direction='below',
      why='float32 round-off',
    ),
    verdict.paired_ratio(
      'The slow arm takes far more steps.',
      [2000.0, 2600.0, 3100.0, 2200.0, 2900.0],
      [1.0, 1.0, 1.0, 1.0, 1.0],
      threshold=2.0,
      direction='above',
      threshold_why='"much slower": 2x',
      seeds_why=SEEDS_WHY,
    ),
    verdict.paired_difference(
      'A beats B.',
      [1.2, 2.9, 2.1, 3.3, 1.8],
      [0.4, 0.8, 0.3, 1.1, 0.9],
      threshold=0.0,
      direction='above',
      threshold_why='"better": a positive difference',
      seeds_why=SEEDS_WHY,
    ),
  ]
  preconditions = [
    verdict.Precondition.compare(
      'B trained (final loss)', 4e-6, threshold=1e-5, direction='below'
    )
  ]
  return report.Result(
    figure=fig,
    columns=('arm', 'steps', 'loss', 'diverged'),
    rows=[('slow', 39127076.5, 6.703e-06, False), ('fast', 12, 0.5, True)],
    subclaims=subclaims,
    summary='The slow arm is slow.',
    protocol=_protocol(),
    notes=('A note.',),
    preconditions=preconditions,
    lead=lead,
    caption=caption,
  )


def _write(result, out_dir) -> tuple[str, dict]:
  report.write(
    result,
    name='made_up',
    claim='A claim.',
    source='a source',
    out_dir=str(out_dir),
    command='python -m experiments.studies made_up',
    wall_time_s=300.0,
    quick=False,
  )
  with open(os.path.join(out_dir, 'made_up.md')) as f:
    md = f.read()
  with open(os.path.join(out_dir, 'made_up.json')) as f:
    return md, json.load(f)


LEAD = (
  'We timed two arms over five seeds. The slow one took more than a '
  'thousand times as many steps. So the claim holds at this scale.'
)


def test_a_format_2_page_shows_its_sections_in_order(tmp_path):
  caption = "Steps per arm; the budget is 9 of the paper's 164 epochs."
  md, record = _write(_format_2_result(LEAD, caption), tmp_path)
  # The files agree with each other, and the landmarks come in order.
  assert studies_testing.check_files(str(tmp_path), 'made_up') == record
  positions = studies_testing.landmark_positions(md, 'made_up')
  assert -1 not in positions and positions == sorted(positions)
  assert md.startswith(f'# made_up\n\n{LEAD}\n\n**Claim** (a source)')
  assert record['lead'] == LEAD and record['caption'] == caption
  assert f'![made_up](made_up.png)\n\n*{caption}*\n\n**Measured**' in md
  assert md.index(page.PROTOCOL_HEADING) < md.index('**Notes.**\n\n- A note.')
  assert md.endswith('Wall time: 5.0 min on ' + report.machine() + '.\n')
  tables = studies_testing.parse_markdown_tables(md)
  assert [t[0] for t in tables] == [
    list(page.CHECK_COLUMNS),
    list(page.PRECONDITION_COLUMNS),
    list(page.CLAIM_COLUMNS),
    ['arm', 'steps', 'loss', 'diverged'],
    list(page.PROTOCOL_COLUMNS),
  ]
  checks, pres, claims, measured = tables[:4]
  assert checks[1] == [
    'An identity holds to round-off.',
    '0.0000000025',
    '< 0.000001 (float32 round-off)',
    'yes',
  ]
  assert pres[1] == ['B trained (final loss)', '0.000004', '< 0.00001', 'yes']
  # The huge ratio in words, its threshold as a factor.
  slow, better = claims[1:]
  assert slow[1:4] == [
    'more than 1,000x',
    '[more than 1,000x, more than 1,000x]',
    '> 2x ("much slower": 2x)',
  ]
  assert slow[4].endswith(f'; 5 seeds: {SEEDS_WHY}')
  assert slow[5] == better[5] == '**holds**'
  assert better[1] == '1.56'
  assert measured[1:] == [
    ['slow', '39.1 million', '0.0000067', 'no'],
    ['fast', '12', '0.5', 'yes'],
  ]
  # No number anywhere on the page in scientific notation.
  assert not re.search(r'\d[eE][-+]?\d', md), re.findall(r'\S*\de-?\d\S*', md)


def test_a_format_2_page_without_lead_or_tables_says_so(tmp_path):
  result = _format_2_result()
  result.subclaims = result.subclaims[:1]  # A check alone.
  result.preconditions = ()
  md, record = _write(result, tmp_path)
  studies_testing.check_files(str(tmp_path), 'made_up')
  lead = md.split('\n\n')[1]
  assert (
    lead
    == record['lead']
    == readable.fallback_lead(
      verdict.CHECKS_PASS, [s.record() for s in result.subclaims], []
    )
  )
  assert '**Preconditions:** none declared.' in md
  assert '**Claims:** none.' in md
  assert '![made_up](made_up.png)\n\n**Measured**' in md  # No caption.


def _records(verdicts, met=(True,)):
  subs = [{'kind': 'check', 'verdict': 'passes'}]
  subs += [{'kind': 'claim', 'verdict': v} for v in verdicts]
  pres = [{'name': f'regime {i}', 'met': m} for i, m in enumerate(met)]
  return subs, pres


@pytest.mark.parametrize(
  ('verdicts', 'met', 'want'),
  [
    (
      ['holds', 'holds'],
      (True,),
      'The study tested 2 statistical claims over seeds and made 1 exact '
      'check. Both claims hold. At this scale the evidence supports',
    ),
    (
      ['holds', 'inconclusive'],
      (True,),
      'Of its 2 claims, 1 holds and 1 is inconclusive. The evidence does not '
      'decide',
    ),
    (
      ['does not hold', 'holds', 'holds'],
      (True,),
      'Of its 3 claims, 2 hold and 1 does not hold. At this scale the '
      'evidence goes against',
    ),
    (
      ['does not hold'] * 3,
      (True,),
      'None of the 3 claims holds. At this scale the evidence goes against',
    ),
    (
      ['does not hold'],
      (True, False),
      '1 precondition of 2 was not met: regime 1. The run never reached the '
      'regime',
    ),
  ],
)
def test_fallback_lead_says_what_was_tested_came_out_and_means(
  verdicts, met, want
):
  subs, pres = _records(verdicts, met)
  headline = verdict.rule(verdicts, list(met))
  lead = readable.fallback_lead(headline, subs, pres)
  assert want in lead
  assert lead.count('. ') == 2 and lead.endswith('.')


@pytest.mark.parametrize(
  ('value', 'want'),
  [
    (0.9954223632812509, '0.995'),
    (6.703e-06, '0.0000067'),
    (2.0, '2'),
    (47.66, '47.7'),
    (1234.5, '1,235'),
    (39127076.5, '39.1 million'),
    (2.5e9, '2.5 billion'),
    (-1e-7, '-0.0000001'),
    (1e-15, '0 (within a trillionth)'),
    (math.inf, 'infinity'),
    (0.0, '0'),
  ],
)
def test_number_is_a_plain_decimal_or_words(value, want):
  assert readable.number(value) == want


@pytest.mark.parametrize(
  ('value', 'want'),
  [
    (5.708, '5.71x'),
    (0.37, '0.37x'),
    (999.0, '999x'),
    (1500.0, 'more than 1,000x'),
    (39127076.5, 'more than 10 million times'),
    (6.703e-06, 'less than 1/100,000'),
    (0.0, '0x'),
  ],
)
def test_a_huge_or_tiny_ratio_prints_in_words(value, want):
  assert readable.ratio(value) == want


def test_interval_and_beside():
  assert (
    readable.interval(0.0, 39127076.5, is_ratio=True)
    == '[0x, more than 10 million times]'
  )
  assert readable.interval(-4.567, 32.17) == '[-4.57, 32.2]'
  # Three digits would print a holding interval's end as its threshold.
  assert readable.beside(2.0004, 2.0) == '2.0004'
  assert readable.beside(0.99995, 1.0) == '0.99995'
  assert readable.beside(1.0, 1.0) == '1'
  assert readable.beside(5.708, 2.0, is_ratio=True) == '5.71x'


def test_lead_and_caption_are_for_format_2_only():
  with pytest.raises(ValueError, match='format 2'):
    report.Result(**{**vars(_old_result()), 'lead': 'Plain words.'})


def test_report_still_gives_every_name_the_studies_use():
  moved = {
    arms: (
      'PLAIN_SGD_MOMENTUM',
      'TrainRun',
      'train',
      'predict',
      'predict_images',
      'plain_sgd',
      'make_config',
    ),
    figures: ('FIGURE_INCHES', 'FIGURE_DPI', 'FIGURE_PX', 'new_figure'),
    page: (
      'PROTOCOL_ASPECTS',
      'PROTOCOL_COLUMNS',
      'SUBCLAIM_COLUMNS',
      'format_cell',
      'markdown_table',
      'subclaim_rows',
    ),
  }
  for module, names in moved.items():
    for name in names:
      assert getattr(report, name) is getattr(module, name), name


_STUDIES_DIR = os.path.dirname(report.__file__)
SKELETON = ('arms', 'figures', 'page', 'readable')


def _imports(name: str) -> set[str]:
  """The experiments.studies modules that NAME.py imports."""
  with open(os.path.join(_STUDIES_DIR, f'{name}.py')) as f:
    tree = ast.parse(f.read())
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module:
      found |= {f'{node.module}.{a.name}' for a in node.names}
      found.add(node.module)
    elif isinstance(node, ast.Import):
      found |= {a.name for a in node.names}
  return {m for m in found if m.startswith('experiments.studies.')}


def test_the_skeleton_imports_no_report_and_no_study():
  study_modules = set(studies.STUDIES.values())
  for name in SKELETON:
    imported = _imports(name)
    assert 'experiments.studies.report' not in imported, name
    assert not imported & study_modules, (name, imported & study_modules)
    with open(os.path.join(_STUDIES_DIR, f'{name}.py')) as f:
      assert len(f.readlines()) <= 400, name
  assert not _imports('report') & study_modules


def test_make_config_is_the_plain_arm_the_studies_build_by_hand():
  keys = {'lr': 0.05, 'seed': 3, 'total_steps': 40, 'log_every_steps': 10}
  made = arms.make_config(
    mnist1d, 'cnn', model_kw={'activation': 'tanh'}, **keys
  )
  by_hand = mnist1d.get_config('cnn')
  by_hand.model_kw.activation = 'tanh'
  report.plain_sgd(by_hand, **keys)
  assert made.to_dict() == by_hand.to_dict()
  assert made.optimizer == 'momentum' and made.model_kw.activation == 'tanh'
  # The data set's own recipe, with nothing evaluated or saved on the way.
  recipe = arms.make_config(mnist1d, 'cnn', plain=False, total_steps=40)
  assert recipe.optimizer == mnist1d.get_config('cnn').optimizer == 'adamw'
  assert recipe.eval_every_steps == recipe.checkpoint_every_steps == 0
  # Another net starts from its own keywords, not the cnn's.
  mlp = arms.make_config(
    mnist1d, 'cnn', model='mlp', model_kw={'hidden_sizes': (8,)}
  )
  assert mlp.model_kw.to_dict() == {'hidden_sizes': (8,)}
