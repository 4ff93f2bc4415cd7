"""Background jobs on a Redis-backed queue (saq): the adapter of the ``JobScheduler`` port."""

from guahao.platform.jobs.saq_jobs import SaqJobs

__all__ = ["SaqJobs"]
