"""Tests of ops/choice_cache.py: reuse, other machines, bad files."""

import json
import os
import pathlib

from ops import choice_cache

ZEN4 = 'model name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2 avx512f avx512_bf16\n'
XEON = 'model name\t: Intel Xeon Platinum\nflags\t\t: fpu avx2 amx_bf16\n'


def _cache(tmp_path, cpuinfo=ZEN4, **kw):
  return choice_cache.ChoiceCache(
    'conv', {'jax': '0.10'}, str(tmp_path), cpuinfo=cpuinfo, **kw
  )


def test_a_second_cache_reads_what_the_first_wrote(tmp_path, capsys):
  first = _cache(tmp_path)
  assert first.get('k') is None
  first.put('k', {'impl': 'xla'})
  second = _cache(tmp_path)
  assert second.get('k') == {'impl': 'xla'}
  assert capsys.readouterr().err == ''
  data = json.loads(pathlib.Path(first.path).read_text())
  assert data['machine']['cpu'] == 'AMD EPYC 9B14'
  assert data['machine']['jax'] == '0.10'


def test_each_machine_has_its_own_file(tmp_path):
  zen, xeon = _cache(tmp_path), _cache(tmp_path, XEON)
  zen.put('k', 'onednn')
  xeon.put('k', 'xla')
  assert zen.path != xeon.path
  assert _cache(tmp_path).get('k') == 'onednn'
  assert _cache(tmp_path, XEON).get('k') == 'xla'
  other_context = choice_cache.ChoiceCache(
    'conv', {'jax': '0.11'}, str(tmp_path), cpuinfo=ZEN4
  )
  assert other_context.get('k') is None


def test_a_foreign_file_is_ignored_with_one_line_and_kept(tmp_path, capsys):
  zen, xeon = _cache(tmp_path), _cache(tmp_path, XEON)
  xeon.put('k', 'xla')
  os.replace(xeon.path, zen.path)  # copied in by hand
  assert zen.get('k') is None
  assert zen.get('other') is None
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1
  assert err[0].startswith('warning: choice cache ')
  assert 'another machine (Intel Xeon Platinum)' in err[0]
  zen.put('k', 'onednn')
  assert json.loads(pathlib.Path(zen.path + '.bad').read_text())['entries'] == {
    'k': 'xla'
  }
  assert _cache(tmp_path).get('k') == 'onednn'
  assert capsys.readouterr().err == ''


def test_a_corrupt_file_is_ignored_with_one_line(tmp_path, capsys):
  cache = _cache(tmp_path)
  os.makedirs(tmp_path, exist_ok=True)
  with open(cache.path, 'w') as f:
    f.write('{"format": 1, "entries": ')  # torn
  assert cache.get('k') is None
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1 and 'cannot be read' in err[0]
  cache.put('k', 1)
  assert _cache(tmp_path).get('k') == 1
  with open(cache.path + '.bad') as f:
    assert f.read().startswith('{"format": 1')


def test_concurrent_writers_merge(tmp_path):
  a, b = _cache(tmp_path), _cache(tmp_path)
  assert a.get('x') is None and b.get('y') is None  # both read the empty file
  a.put('x', 1)
  b.put('y', 2)
  assert _cache(tmp_path).get('x') == 1
  assert _cache(tmp_path).get('y') == 2


def test_an_unwritable_folder_keeps_choices_in_memory(tmp_path, capsys):
  blocker = tmp_path / 'file'
  blocker.write_text('not a folder')
  cache = choice_cache.ChoiceCache('conv', None, str(blocker), cpuinfo=ZEN4)
  cache.put('k', 1)
  cache.put('j', 2)
  assert cache.get('k') == 1 and cache.get('j') == 2
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1 and 'cannot be written' in err[0]


def test_default_directory():
  env = {'HOME': '/h', 'XDG_CACHE_HOME': '/x'}
  assert choice_cache.default_directory(env) == '/x/convnets-jax/choices'
  env[choice_cache.ENV] = ''
  assert choice_cache.default_directory(env) == ''
  memory = choice_cache.ChoiceCache('conv', None, '', cpuinfo=ZEN4)
  memory.put('k', 1)
  assert memory.get('k') == 1 and memory.path == ''
