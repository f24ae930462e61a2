"""Deterministic synthetic workload: reference seed, payment traffic, fraud, NoSQL landing files.

See ``docs/generator.md``. Entry points: :func:`reference.seed_reference`,
:func:`reference.apply_merchant_changes`, :func:`reference.copy_reference_replicas`,
:func:`loader.load_traffic`, :func:`landing.write_landing`; command line ``python -m paydata.generator``.
"""

from paydata.generator.config import GeneratorError, TrafficConfig, interval_seed, run_interval

__all__ = ["GeneratorError", "TrafficConfig", "interval_seed", "run_interval"]
