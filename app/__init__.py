"""Shared plumbing: settings, database, Redis, lifespan, embedded dev stack, CLI."""
