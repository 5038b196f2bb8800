"""What a model is asked to do, in one place: classification, multi-label classification and
regression, each an object of `fmloop.tasks.catalog` (probabilities, decoding, loss, metrics,
agreement), and the scikit-learn metrics behind them (`fmloop.tasks.metrics`)."""

from fmloop.tasks.catalog import TASKS, Task, get_task

__all__ = ["TASKS", "Task", "get_task"]
