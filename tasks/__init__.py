"""The task feature: models, schemas, repository, service, router, handlers, worker."""
