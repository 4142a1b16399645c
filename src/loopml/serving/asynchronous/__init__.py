"""Asynchronous inference: accept work now, answer later, lose nothing (``lm.async_requests``).

A request (an upload to screen, a document to score) is stored with its input in the artifact
store, its tags and the queue job that will process it, all in one transaction; a worker moves it
through statuses with compare-and-set transitions, each of which can carry a notification that
commits with it. See docs/async.md.
"""

from loopml.serving.asynchronous.records import AsyncRequest
from loopml.serving.asynchronous.service import AsyncRequests

__all__ = ["AsyncRequest", "AsyncRequests"]
