"""``alarm demo``: the embedded default that runs the whole system on a CPU with no downloads."""

from alarm.demo.run import STAGES, DemoConfig, done_stages, run_demo

__all__ = ["STAGES", "DemoConfig", "done_stages", "run_demo"]
