"""Taskline for its users: the `taskline` command (`taskline.cli`), which sits
above the features it drives."""
