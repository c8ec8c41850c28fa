"""What the command-line tools of experiments/ share: error lines and logs.

Every tool (`main`, `plot`, `summary`) ends an expected failure with one line
`error: ...` on stderr and exit status 1, and keeps library INFO logs (jax's
backend probing, orbax's checkpoint chatter) off the terminal unless the user
asks for them with absl's `--verbosity`.
"""

import sys

from absl import flags
from absl import logging


def fail(message: object) -> None:
  """Prints one error line (whatever the message's line breaks) and exits 1."""
  text = ' '.join(str(message).split())
  print(f'error: {text}', file=sys.stderr, flush=True)
  sys.exit(1)


def quiet_library_logs() -> None:
  """Shows only warnings and errors, unless --verbosity was given."""
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
