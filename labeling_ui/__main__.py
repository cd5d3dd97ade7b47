"""``python -m labeling_ui ...`` is ``align-label ...``."""

import sys

from labeling_ui.cli import main

sys.exit(main())
