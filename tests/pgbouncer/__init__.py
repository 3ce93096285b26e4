"""The PgBouncer tests (issue 17): a package, so that its conftest.py is
``pgbouncer.conftest`` and ``from conftest import ...`` still means
``tests/conftest.py``; its folder is on ``sys.path`` so that the harness
module imports as a plain module (``bouncer``)."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
