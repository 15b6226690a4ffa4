"""`frame_metadata` does not keep the frame it describes alive after the step that made it.

Dagster keeps the local variables of the function that first builds a record class (TableSchema);
a fresh process shows whether that first build happens beside a step's frame."""

import subprocess
import sys

PROBE = """
import gc, weakref
import pandas as pd
from personalization_assets.assets.common import frame_metadata

def step():
    frame = pd.DataFrame({"a": range(10)})
    frame_metadata(frame)
    return weakref.ref(frame)

ref = step()
gc.collect()
print("alive" if ref() is not None else "freed")
"""


def test_a_described_frame_is_freed_when_its_step_ends():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "freed"
