"""calsync.jobs: when syncs run (see docs/architecture.md and docs/deploy.md "Jobs").

`make_job_queue(settings, db, google)` gives the configured `JobQueue`: the in-process runner
(embedded default) or procrastinate on PostgreSQL (`calsync worker`).
"""

from .factory import make_job_queue
from .port import JobQueue, Reason

__all__ = ["JobQueue", "Reason", "make_job_queue"]
