"""Parley's persistence layer: SQLModel tables, engine set-up, migrations, repository."""
