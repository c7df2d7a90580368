"""Test doubles shipped with Keel: scripted models, loopback provider servers, a fake clock."""
