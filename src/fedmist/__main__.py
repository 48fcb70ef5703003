"""`python -m fedmist` is the same as the `fedmist` command."""

import sys

from fedmist.cli import main

sys.exit(main())
