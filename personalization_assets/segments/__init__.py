"""Segments as code: declarative definitions compiled to warehouse SQL, membership and suppression."""
