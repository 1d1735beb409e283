"""Common code of the campaign services: settings, logging, database, bus, messages and domain."""
