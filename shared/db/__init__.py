"""PostgreSQL access: pool, migrations and one module of named SQL per aggregate."""
