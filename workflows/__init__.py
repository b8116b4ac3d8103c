"""Workflows: chains of steps and groups with a fan-in, built on tasks."""
