"""External systems for superloops (planned)."""
