"""Agents: the recommender side of simulated sessions, and the in-process API.

- ``dummy``: uniformly random tracks, no service;
- ``remote``: the service over HTTP (COMPAT ``/next``, ``/last``), many sessions in flight;
- ``console``: a human types track ids;
- ``oracle``: an upper bound that reads the hidden taste (clearly labelled);
- :func:`run_inprocess`: evaluate any ``recommend(user, track, time) -> track`` callable.
"""

from sim.agents.base import Agent, AgentError, AsyncAgent
from sim.agents.console import ConsoleAgent, ConsoleQuitError
from sim.agents.inprocess import run_inprocess
from sim.agents.oracle import OracleAgent
from sim.agents.remote import RemoteAgent
from sim.agents.simple import CallableAgent, DummyAgent

__all__ = [
    "Agent",
    "AgentError",
    "AsyncAgent",
    "CallableAgent",
    "ConsoleAgent",
    "ConsoleQuitError",
    "DummyAgent",
    "OracleAgent",
    "RemoteAgent",
    "run_inprocess",
]
