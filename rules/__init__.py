"""podium.rules: the API's rules that more than one side applies, each defined once.

The manager, the agent and the client (CLI and library) all import from here rather than keeping
copies that drift apart: what a task state means, the name, constraint and routing grammars, the
restart backoff, the probe defaults and how sizes are written. Pure: no I/O, no event loop.
"""
