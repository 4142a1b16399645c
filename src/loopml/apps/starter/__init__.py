"""The starter story: ingest messy data -> train -> register -> gate -> batch score, end to end."""

from loopml.apps.starter.story import run_story

__all__ = ["run_story"]
