import sys

from dllab.cli import main

sys.exit(main())
