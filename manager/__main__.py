"""`python -m podium.manager`: the manager daemon (see podium.manager.main)."""

import sys

from podium.manager.main import main

sys.exit(main())
