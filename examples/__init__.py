"""Example agents built on Keel."""
