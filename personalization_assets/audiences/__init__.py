"""Audiences: one YAML definition compiled to warehouse SQL and to the stream, proven equivalent.

`model` parses the language, `sql` compiles it for DuckDB/Snowflake with bound values only,
`stream` runs it as keyed state with timers, `equivalence` replays history through both and
reports who differs and why. No Dagster here: the assets in `assets/audiences.py` wrap it.
"""
