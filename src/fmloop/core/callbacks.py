"""The training loop's callback protocol. Callbacks observe the loop and signal through `Control`;
they never touch the optimizer or the weights. The protocol lives here, below every stage, so that
transfer strategies (fmloop.adapt) and compression (fmloop.compress) can hook into the one loop of
fmloop.train without importing it; the callbacks fmloop ships are in fmloop.train.callbacks.

Hooks: on_train_start(loop), on_step_end(loop, logs), on_evaluate(loop, metrics), on_train_end(loop).
`loop` is the running `fmloop.train.loop.Loop` (state, runtime, settings, control, model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Control:
    """Requests from callbacks to the loop, checked after every step."""

    should_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False
    stop_reason: str | None = None

    def stop(self, reason: str, save: bool = True) -> None:
        if not self.should_stop:
            self.should_stop, self.stop_reason = True, reason
        self.should_save = self.should_save or save


class Callback:
    def on_train_start(self, loop: Any) -> None: ...
    def on_step_end(self, loop: Any, logs: dict[str, Any]) -> None: ...
    def on_evaluate(self, loop: Any, metrics: dict[str, Any]) -> None: ...
    def on_train_end(self, loop: Any) -> None: ...
