"""``python -m graphql_api.cli``: the same as the ``statements`` command."""

import sys

from graphql_api.cli import main

sys.exit(main())
