"""sim: the users of botify, simulated.

Importing `sim` only registers the Gymnasium environment `sim/MusicSession-v0`
(numpy and gymnasium are the only imports); the world, model and engines load
on first use.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

ENV_ID = "sim/MusicSession-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="sim.env:MusicSessionEnv")

__all__ = ["ENV_ID", "__version__"]
