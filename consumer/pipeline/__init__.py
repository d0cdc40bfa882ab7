"""The `Processor`: one chain of gates, composed once (`chain.compose`),
that every run of records goes down — a single record is a run of one —
with the handler adapted at its end (`chain.endpoint`).

    process_run → [tracing] → timing → validation → [singles] → settle
    → correlation → retry → [user middleware] → [timeout] → handler
    → (emit; retry submits → batcher → sink) → settle's write callbacks → done

`build_processor(settings)` builds it; `Pipeline` owns its resources.
"""

from consumer.gates.context import Context, RunContext, batch_handler
from consumer.pipeline.build import STORE_HANDLER, Parts, build_processor, load_parts
from consumer.pipeline.chain import Observer, load_handler, load_middleware
from consumer.pipeline.processor import Pipeline

__all__ = ["STORE_HANDLER", "Context", "Observer", "Parts", "Pipeline", "RunContext",
           "batch_handler", "build_processor", "load_handler", "load_middleware",
           "load_parts"]
