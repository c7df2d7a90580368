"""Keel: a production runtime for AI agents."""
