"""Topics, queues as resources, and HTTP consumers.

A message published to a topic becomes one task of kind `message` in every
subscribed queue whose filters it matches; consumers in any language lease
those tasks over HTTP with the same claim the Python workers use.
"""
