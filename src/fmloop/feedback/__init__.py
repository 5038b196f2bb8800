"""What users say about a served model: the feedback store (predictions and corrections, SQLAlchemy
on SQLite or PostgreSQL, migrated by Alembic), and later the retraining that learns from it."""
