"""Benchmarks for reward models (layer L3): pairwise accuracy (pairs files, HumanEvalPack, RM-Bench)
and no-training baselines. Entry point: ``codescaler eval``."""
