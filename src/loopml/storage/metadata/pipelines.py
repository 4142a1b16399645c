"""Tables and queries for pipelines; filled by its owner."""
