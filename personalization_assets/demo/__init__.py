"""The local demo: generated sources (`generator`, `seed`), the demo orders API, the run with its
progress lines (`run`, `progress`) and the data set's state on disk (`state`)."""
