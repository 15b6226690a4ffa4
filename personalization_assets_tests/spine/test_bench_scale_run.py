"""bench.scale_run turns off execute_in_process's output capture: an asset's output value is
freed when its step ends, not kept until the run ends."""

import gc
import weakref

import dagster as dg

from bench.scale_run import without_output_capture


class Big:
    """An output whose lifetime the test watches."""


def _run_and_watch() -> tuple[weakref.ref, dg.ExecuteInProcessResult]:
    ref = {}

    @dg.asset(io_manager_key="nothing")
    def made() -> Big:
        value = Big()
        ref["made"] = weakref.ref(value)
        return value

    @dg.io_manager
    def nothing(_):
        class Discard(dg.IOManager):
            def handle_output(self, context, obj):
                pass

            def load_input(self, context):
                return None

        return Discard()

    result = dg.materialize([made], resources={"nothing": nothing})
    gc.collect()
    return ref["made"], result


def test_output_capture_keeps_the_value_and_without_it_the_value_is_freed(monkeypatch):
    from dagster._core.execution import execute_in_process as module

    ref, result = _run_and_watch()
    assert result.success and ref() is not None  # Dagster's default: held by the result
    monkeypatch.setattr(module, "core_execute_in_process", module.core_execute_in_process)  # restored after
    without_output_capture()
    ref, result = _run_and_watch()
    assert result.success and ref() is None
