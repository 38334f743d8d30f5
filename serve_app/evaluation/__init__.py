"""Accuracy evaluation on public benchmarks (LFW)."""
