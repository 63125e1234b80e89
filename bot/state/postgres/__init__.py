"""The bot's state in PostgreSQL, for several replicas sharing one database.

Imported only when `CXR_DATABASE_URL` is set: psycopg comes with the `postgres` extra.
"""
