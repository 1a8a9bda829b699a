"""`python -m lce_client`: the `lce` command."""

import sys

from lce_client.cli import main

sys.exit(main())
