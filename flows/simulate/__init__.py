"""The simulated core bank: daily changes to the `corebank` source plus CRM/ops feed files."""

from flows.simulate.generator import Rates
from flows.simulate.run import SimulationSummary, simulate

__all__ = ["Rates", "SimulationSummary", "simulate"]
