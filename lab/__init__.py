"""podium.lab: Podium on one machine, to try it and to test and benchmark it.

`podium.lab.local` runs a manager and agents as real processes on the local engine;
`podium.lab.hosts` simulates several hosts (network namespaces, each with its own Docker engine
and agent: `deploy/hosts.sh`); `podium.lab.fakeexec` is an in-memory executor for logic tests and
for simulating many agents. None of it is used by the daemons.
"""
