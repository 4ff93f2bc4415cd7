"""Per-second counters of a serving worker, for finding where a paced tail comes from.

Put this directory on ``PYTHONPATH`` and set ``GUAHAO_LOOP_WATCH`` to a directory: every
``guahao serve`` process (the workers of ``--workers`` too) then writes one line a second to
``<dir>/<pid>.txt``: the event loop's lateness (a callback asked for every 5 ms: its worst
delay and how many were 20 / 50 ms late), the garbage collector's pauses by generation, and
the rate limiter's outcomes (hits, refusals, calls to Redis on the exact path and their round
trips, syncs and theirs). The lines start at the app's first call (its lifespan's start): a
process serving only reads never asks the limiter, and wrote none when the limiter's first
request started them. Nothing in the platform imports it; it wraps Litestar's and the
limiter's methods from outside, so the same file measures any tree whose limiter has them
(session 11's and the code before tail2: ``_decide`` or ``_acquire``).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from collections import defaultdict
from typing import Any

_DIR = os.environ.get("GUAHAO_LOOP_WATCH")
_TICK = 0.005
_TYPES = bool(os.environ.get("GUAHAO_LOOP_WATCH_TYPES"))


class _Watch:
    def __init__(self, directory: str) -> None:
        self.out = open(os.path.join(directory, f"{os.getpid()}.txt"), "a", buffering=1)  # noqa: SIM115
        self.counts: defaultdict[str, float] = defaultdict(float)
        self.second = int(time.time())
        self.gc_started = 0.0
        self.gc_cpu_started = 0.0
        self.started = False
        self.young = ""
        """GUAHAO_LOOP_WATCH_TYPES: the first young or middle collection of a second, what it
        walks (the generation's objects by type, before it runs)."""

    def add(self, name: str, value: float = 1.0) -> None:
        self.counts[name] += value

    def most(self, name: str, value: float) -> None:
        if value > self.counts[name]:
            self.counts[name] = value

    def flush(self, now: float) -> None:
        second = int(now)
        if second == self.second:
            return
        c = self.counts
        ticks = c["ticks"] or 1
        exact = c["exact"] or 1
        syncs = c["syncs"] or 1
        self.out.write(
            f"{self.second % 1000:>4} hits {c['hits']:>6.0f} refused {c['refused']:>6.0f} "
            f"exact {c['exact']:>5.0f} exact_ms {c['exact_ms'] / exact:>6.1f} "
            f"max {c['exact_max']:>6.1f} syncs {c['syncs']:>3.0f} sync_ms "
            f"{c['sync_ms'] / syncs:>6.1f} | lag max {c['lag_max']:>6.1f} ms "
            f">20 {c['lag20']:>3.0f} >50 {c['lag50']:>3.0f} mean {c['lag_sum'] / ticks:>5.2f} "
            f"| gc0 {c['gc0']:>4.0f} {c['gc0_ms']:>6.1f}ms gc1 {c['gc1']:>3.0f} "
            f"{c['gc1_ms']:>6.1f}ms/{c['gc1_freed']:.0f} "
            f"gc2 {c['gc2']:>2.0f} {c['gc2_ms']:>6.1f}ms "
            f"max {c['gc_max']:>6.1f}ms cpu2 {c['gc2_cpu']:>6.1f}ms "
            f"cpu0 {c['gc0_cpu']:>6.1f}ms cpu1 {c['gc1_cpu']:>6.1f}ms\n"
        )
        if self.young:
            self.out.write(self.young)
            self.young = ""
        if _TYPES and c["gc2"]:
            self.write_types()
        self.counts = defaultdict(float)
        self.second = second

    def write_types(self) -> None:
        """What the full collections walk: the objects of the oldest generation by type (a
        diagnosis only: listing them takes as long as a collection)."""
        from collections import Counter

        kinds = Counter(type(o).__qualname__ for o in gc.get_objects(generation=2))
        top = ", ".join(f"{name} {n}" for name, n in kinds.most_common(12))
        frozen = gc.get_freeze_count()
        self.out.write(f"     gen2 {sum(kinds.values())} objects, frozen {frozen}: {top}\n")
        sizes = sorted(
            (
                (len(o), type(o).__qualname__)
                for o in gc.get_objects(generation=2)
                if isinstance(o, (list, dict, tuple, set, frozenset)) and len(o) > 1000
            ),
            reverse=True,
        )
        self.out.write(f"     gen2 large containers: {sizes[:12]}\n")

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        generation = info["generation"]
        if phase == "start":
            if _TYPES and generation == 2:
                gc.set_debug(gc.DEBUG_SAVEALL)
            if _TYPES and generation < 2 and not self.young:
                from collections import Counter

                objects = [o for g in range(generation + 1) for o in gc.get_objects(g)]
                kinds = Counter(type(o).__qualname__ for o in objects)
                top = ", ".join(f"{name} {n}" for name, n in kinds.most_common(14))
                self.young = f"     gen{generation} walks {len(objects)}: {top}\n"
                tuples = [o for o in objects if type(o) is tuple]
                shapes = Counter(
                    (len(t), tuple(type(i).__qualname__ for i in t[:4])) for t in tuples
                )
                self.young += f"     its tuples by shape: {shapes.most_common(6)}\n"
                if tuples:
                    sample = tuples[len(tuples) // 2]
                    holders = [type(r).__qualname__ for r in gc.get_referrers(sample)][:4]
                    self.young += f"     one: {sample!r:.160} held by {holders}\n"
                del objects
            self.gc_started = time.perf_counter()
            self.gc_cpu_started = time.thread_time()
            return
        took = (time.perf_counter() - self.gc_started) * 1000
        self.add(f"gc{generation}_cpu", (time.thread_time() - self.gc_cpu_started) * 1000)
        self.add(f"gc{generation}_freed", info["collected"])
        if _TYPES and generation == 2:
            from collections import Counter

            gc.set_debug(0)
            kinds = Counter(type(o).__qualname__ for o in gc.garbage)
            top = ", ".join(f"{name} {n}" for name, n in kinds.most_common(14))
            self.out.write(f"     gen2 garbage {len(gc.garbage)}: {top}\n")
            gc.garbage.clear()
        self.add(f"gc{generation}")
        self.add(f"gc{generation}_ms", took)
        self.most("gc_max", took)

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        loop = asyncio.get_running_loop()

        def tick(asked: float) -> None:
            now = time.monotonic()
            late = (now - asked) * 1000
            self.add("ticks")
            self.add("lag_sum", late)
            self.most("lag_max", late)
            if late > 20:
                self.add("lag20")
            if late > 50:
                self.add("lag50")
            self.flush(time.time())
            loop.call_later(_TICK, tick, now + _TICK)

        loop.call_later(_TICK, tick, time.monotonic() + _TICK)


class _WrapOnImport:
    """Wraps the limiter once its module is imported from whichever tree ``sys.path`` names
    (``python -m`` puts the working directory first only after this file has run)."""

    def __init__(self, watch: _Watch) -> None:
        self.watch = watch

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        wrap = _WRAPS.get(name)
        if wrap is None:
            return None
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader, watch = spec.loader, self.watch

        class Loader(type(loader)):  # type: ignore[misc]
            def exec_module(self, module: Any) -> None:
                loader.exec_module(module)
                wrap(watch, module)

        spec.loader = Loader(loader.name, loader.path)  # type: ignore[attr-defined]
        return spec


def _wrap_app(watch: _Watch, module: Any) -> None:
    """Start the watch at the app's first call: the lifespan's start, before any request."""
    call = module.Litestar.__call__

    async def watched_call(self: Any, scope: Any, receive: Any, send: Any) -> None:
        watch.start()
        await call(self, scope, receive, send)

    module.Litestar.__call__ = watched_call


def _wrap_limiter(watch: _Watch, module: Any) -> None:
    limiter = module.RequestLimiter
    hit = limiter.hit

    async def watched_hit(self: Any, checks: Any) -> None:
        watch.start()
        watch.add("hits")
        try:
            await hit(self, checks)
        except Exception:
            watch.add("refused")
            raise

    limiter.hit = watched_hit  # type: ignore[method-assign]
    from_memory = getattr(limiter, "hit_from_memory", None)
    if from_memory is not None:  # the front's reads and a loop turn's grants ask this, not hit

        def watched_from_memory(self: Any, checks: Any, _from_memory: Any = from_memory) -> bool:
            watch.start()
            try:
                admitted: bool = _from_memory(self, checks)
            except Exception:
                watch.add("hits")
                watch.add("refused")
                raise
            if admitted:  # False: only Redis decides, and the caller's hit counts it there
                watch.add("hits")
            return admitted

        limiter.hit_from_memory = watched_from_memory  # type: ignore[method-assign]
    for name in ("_decide", "_acquire"):
        exact = getattr(limiter, name, None)
        if exact is None:
            continue

        def watched_exact(self: Any, counter: Any, _exact: Any = exact) -> Any:
            async def run() -> Any:
                asked = time.perf_counter()
                try:
                    return await _exact(self, counter)
                finally:
                    took = (time.perf_counter() - asked) * 1000
                    watch.add("exact")
                    watch.add("exact_ms", took)
                    watch.most("exact_max", took)

            return run()

        setattr(limiter, name, watched_exact)
    send = limiter._send

    async def watched_send(self: Any, counters: Any, **options: Any) -> None:
        asked = time.perf_counter()
        try:
            await send(self, counters, **options)
        finally:
            watch.add("syncs")
            watch.add("sync_ms", (time.perf_counter() - asked) * 1000)

    limiter._send = watched_send  # type: ignore[method-assign]


_WRAPS = {"litestar.app": _wrap_app, "guahao.platform.rate_limiting.redis_limiter": _wrap_limiter}

if _DIR and "serve" in sys.argv:
    _WATCH = _Watch(_DIR)
    gc.callbacks.append(_WATCH.on_gc)
    sys.meta_path.insert(0, _WrapOnImport(_WATCH))
