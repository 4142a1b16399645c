"""Pipelines: typed Python steps in a DAG, cached by input hash, retried, scheduled and durable.

```python
from loopml.pipelines import pipeline, step

@step(retries=2)
def load(rows: int) -> pd.DataFrame: ...

@step
def train(load: pd.DataFrame, lr: float) -> dict: ...

@pipeline("demo", schedule="0 6 * * 2", params={"rows": 100, "lr": 0.1})
def demo():
    return [load, train]
```

``lm.pipelines.run("demo")`` runs it here; ``lm.pipelines.submit("demo")`` queues a ``pipeline.run``
job that a worker executes (importing this package registers that job handler).
"""

from loopml.pipelines.definition import Pipeline, Step, pipeline, register, registered, step, unregister
from loopml.pipelines.models import PipelineInfo, PipelineRun, Schedule, StepInfo, StepRun
from loopml.pipelines.service import Pipelines, load_pipeline_modules

__all__ = [
    "Pipeline",
    "PipelineInfo",
    "PipelineRun",
    "Pipelines",
    "Schedule",
    "Step",
    "StepInfo",
    "StepRun",
    "load_pipeline_modules",
    "pipeline",
    "register",
    "registered",
    "step",
    "unregister",
]

# Registers the ``pipeline.run`` job handler with loopml.worker (the worker imports this package).
from loopml.pipelines import jobs as _jobs  # noqa: F401
