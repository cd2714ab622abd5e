"`python -m cello1`: the `cello1` command."
import sys

from cello1.cli import main

sys.exit(main())
