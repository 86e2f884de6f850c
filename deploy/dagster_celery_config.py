"""The Celery workers' settings (the launcher's come from dagster.yaml): the same broker and results backend, and
one run at a time per worker process. Celery imports this module by name: run workers with deploy/ on PYTHONPATH."""

import os

broker_url = os.environ["DAGSTER_CELERY_BROKER"]
result_backend = os.environ["DAGSTER_CELERY_BACKEND"]
worker_prefetch_multiplier = 1
task_acks_late = True
result_extended = True
