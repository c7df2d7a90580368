"""The keel command line."""
