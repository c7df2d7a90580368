"""The runtime: runs agents, executes effects, persists each step."""
