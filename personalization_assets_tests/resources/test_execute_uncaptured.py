"""`execute_watched` (the demo's and the command line's runs) does not keep a step's output value
once the step's IO manager has stored it; the run's events, tags and config are as
`execute_in_process` gives them."""

import gc
import weakref

import dagster as dg

from personalization_assets.resources.pool import execute_watched


class Big:
    """An output whose lifetime the test watches."""


def _job(refs: list) -> dg.JobDefinition:
    @dg.asset(io_manager_key="discard")
    def made(context: dg.AssetExecutionContext, config: dg.PermissiveConfig) -> Big:
        value = Big()
        refs.append(weakref.ref(value))
        context.add_output_metadata({"size": config.model_dump().get("size", 0)})
        return value

    class Discard(dg.IOManager):
        def handle_output(self, context, obj):
            pass

        def load_input(self, context):
            return None

    return dg.Definitions(assets=[made], resources={"discard": Discard()},
                          jobs=[dg.define_asset_job("j", selection=[made])]).resolve_job_def("j")


def test_the_output_value_is_freed_and_the_run_is_unchanged():
    run_config = {"ops": {"made": {"config": {"size": 7}}}}
    with dg.instance_for_test() as instance:
        captured = []
        held = _job(captured).execute_in_process(instance=instance, run_config=run_config)
        gc.collect()
        assert held.success and captured[0]() is not None  # Dagster's default: the result holds it

        freed = []
        result = execute_watched(_job(freed), instance, say=lambda line: None, poll=0.2, run_config=run_config,
                                 tags={"origin": "test"}, raise_on_error=False)
        gc.collect()
        assert result.success and freed[0]() is None
        [event] = result.get_asset_materialization_events()
        assert event.materialization.metadata["size"].value == 7
        assert instance.get_run_by_id(result.run_id).tags["origin"] == "test"
