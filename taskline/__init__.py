"""Taskline for its users: the `taskline` command (`taskline.cli`) and the typed
HTTP client (`taskline.client`). Both sit above the features they drive."""
