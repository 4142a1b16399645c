"""Tables and queries for datasets; filled by its owner."""
