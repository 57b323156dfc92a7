"""`python -m podium.agent`: the agent daemon (see podium.agent.main)."""

import sys

from podium.agent.main import main

sys.exit(main())
