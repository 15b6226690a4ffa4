"""Real-time triggers: declarative rules, a pure engine, a fire ledger and the stream process.

Reading order: `definitions` (what a trigger is), `events` (time semantics), `engine` (the state
machine), `limits` and `guards` (what is checked before a fire), `ledger` (exactly-once),
`runner` (the long-running process), `backtest` (the same engine over history).
"""
