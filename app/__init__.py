"""Shared plumbing: settings, database, Redis, lifespan, the embedded dev stack."""
