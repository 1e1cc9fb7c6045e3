"""sim: the users of botify, simulated (placeholder until the simulator lands)."""
