"""Your task handlers: one module per area (handlers/media.py, ...), named in
TASKLINE_HANDLERS (handlers.media). `make run` imports them from here, the
Docker image copies this folder, and `make test` lints and type-checks it.
See README, "Adding a handler"."""
