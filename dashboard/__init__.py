"""The web dashboard at /dashboard: server-rendered pages over the same service
and repository functions as the API; every action goes through the public API."""
