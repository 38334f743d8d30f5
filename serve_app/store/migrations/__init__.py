"""Alembic environment and revisions for the control schema `faceserve` (see versions.migrate)."""
