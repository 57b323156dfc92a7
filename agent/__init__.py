"""podium.agent: the agent that runs a node's tasks as containers on its Docker engine."""
