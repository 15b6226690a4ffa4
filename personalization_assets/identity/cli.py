"""`personalization identity link|unlink A B --reason ...`: a person decides a review case.

The arguments are declared in `personalization_assets/cli.py` (building the parser must not import
the identity engine and pandas); this module does the work.

The decision is written to ``core.identity_decisions`` of the local warehouse and obeyed by
every later identity run (``core.customers``): link joins the two records' clusters, unlink
keeps them apart. Both record ids must exist in ``core.customer_crosswalk``.
"""

from __future__ import annotations

import argparse
import getpass


def decide(args: argparse.Namespace) -> int:
    from personalization_assets import settings
    from personalization_assets.errors import UserError
    from personalization_assets.identity.decisions import decision_row, record_decision
    from personalization_assets.warehouse import connect_duckdb

    if settings.deployment() != "local":
        raise UserError("`identity` writes to the embedded DuckDB warehouse; on Snowflake call "
                        "identity.decisions.record_decision with a warehouse connection")
    path = settings.warehouse_path()
    if not path.exists():
        raise UserError(f"no warehouse at {path}: run `personalization demo` or set PERSONALIZATION_DATA_DIR")
    try:
        row = decision_row(args.left, args.right, args.action, args.reason, args.by or getpass.getuser())
    except ValueError as exc:
        raise UserError(str(exc)) from None
    with connect_duckdb(path) as conn:
        if not conn.table_exists("core", "customer_crosswalk"):
            raise UserError("no core.customer_crosswalk yet: materialize core/customers first")
        known = set(conn.query("select record_id from core.customer_crosswalk where record_id in (?, ?)",
                               [args.left, args.right])["record_id"])
        missing = [r for r in (args.left, args.right) if r not in known]
        if missing:
            raise UserError(f"unknown record id(s) {', '.join(missing)}: use record_id values of "
                            "core.customer_crosswalk (e.g. crm:1042)")
        record_decision(conn, row)
    print(f"{args.action} {args.left} {args.right} recorded ({row['decision_id'][0]}); "
          "the next identity run (core/customers) applies it and every later run keeps it")
    return 0
