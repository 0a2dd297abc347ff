"""Intake: extracts in (the drop, uploads, the API, the form, the CLI), into the review queue."""
