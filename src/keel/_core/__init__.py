"""The pure core: messages, events, the run-state fold, limits and pricing.

Nothing in this package does I/O or reads a clock; the runtime layer drives it.
"""
