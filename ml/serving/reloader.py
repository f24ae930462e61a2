"""Hot reload: the served model follows the registry alias without a restart.

A background thread polls ``get_model_version_by_alias`` every ``poll_seconds``. When the alias
names a version other than the one served, it is loaded and checked (:func:`ml.serving.model.
load_version`) on that thread, off the request path, and then swapped in by one reference
assignment. A request reads :attr:`ModelHolder.current` once and scores with that object to the
end, so requests in flight finish on the model they started with while new ones get the new one.
A version that fails to load or its canary is refused: the old model keeps serving, the refusal
is logged and counted, and that version is not tried again until the alias moves on.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager

from ml.serving.metrics import ScorerMetrics
from ml.serving.model import LoadedModel, ModelRefused, load_version

log = logging.getLogger(__name__)

# While a version loads on the reload thread, the event loop must win the GIL back quickly: each
# request gives it up around its store reads, and with the interpreter's default 5 ms switch
# interval every read would wait up to that long behind the loading thread.
LOADING_SWITCH_INTERVAL = 0.0005


@contextmanager
def loop_first():
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, LOADING_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


class ModelHolder:
    def __init__(self, client, *, name: str, alias: str, model_features: tuple[str, ...],
                 metrics: ScorerMetrics, poll_seconds: float = 10.0,
                 loader: Callable[..., LoadedModel] = load_version):
        self.client, self.name, self.alias = client, name, alias
        self.model_features = tuple(model_features)
        self.metrics, self.poll_seconds, self.loader = metrics, poll_seconds, loader
        self.current: LoadedModel | None = None
        self.refused: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one poll at a time (the thread and a caller of poll_once)

    def poll_once(self) -> str:
        """Check the alias once; returns ``unchanged``, ``loaded``, ``refused``, ``known_refused`` or
        ``registry_error``."""
        with self._lock:
            try:
                version = str(self.client.get_model_version_by_alias(self.name, self.alias).version)
            except Exception as exc:  # registry down or alias missing: keep serving what we have
                log.warning("model alias %s@%s not readable: %s", self.name, self.alias, type(exc).__name__)
                self.metrics.reloads.labels(outcome="registry_error").inc()
                return "registry_error"
            if self.current is not None and self.current.version == version:
                return "unchanged"
            if version in self.refused:
                return "known_refused"
            try:
                with loop_first():
                    loaded = self.loader(self.client, self.name, version, self.model_features)
            except ModelRefused as exc:
                self.refused[version] = str(exc)
                self.metrics.reloads.labels(outcome="refused").inc()
                log.error("refused %s v%s, still serving %s: %s", self.name, version,
                          self.current and f"v{self.current.version}", exc)
                return "refused"
            previous = self.current
            self.current = loaded  # the swap: one reference assignment, atomic for readers
            self.metrics.model_version.set(float(version) if version.isdigit() else -1)
            self.metrics.model_loaded_at.set(loaded.loaded_at)
            self.metrics.reloads.labels(outcome="loaded").inc()
            log.info("serving %s v%s (was %s)", self.name, version, previous and f"v{previous.version}")
            return "loaded"

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # never let the poller die: the next poll retries
                log.exception("model poll failed")

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="model-reload", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
