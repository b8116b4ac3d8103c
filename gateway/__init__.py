"""The gateway: a priority queue in front of a REST API, and the `http` task kind."""
