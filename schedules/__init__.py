"""Periodic schedules: tasks created on a cron expression or every N seconds,
exactly one per tick across the fleet."""
