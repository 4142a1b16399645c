"""Tables and queries for registry; filled by its owner."""
