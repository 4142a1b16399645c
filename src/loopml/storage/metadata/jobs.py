"""Tables and queries for jobs; filled by its owner."""
