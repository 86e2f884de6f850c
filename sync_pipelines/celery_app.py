"""The run workers' Celery app, for `celery --app sync_pipelines.celery_app worker` (deploy/): the Celery command
finds an app by module, so this module makes it when imported; nothing else imports it."""

from sync_pipelines.celery_workers import worker_app

app = worker_app()
