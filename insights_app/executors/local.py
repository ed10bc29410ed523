"""The local executor: every chunk through the visualizer's own engines (the default).

Each engine reads its store before computing and writes what it computed, so what is
stored is read, not recomputed: a run stopped by Ctrl+C or ``kill -9`` resumes where it
stopped (at most the chunk in flight is redone).
"""

from __future__ import annotations

from . import Run


def run_local(run: Run) -> None:
    """Walk the dataset in chunks; run every method with every model's engine on each."""
    ex_id = 0
    while run.limit is None or ex_id < run.limit:
        chunk = run.read_chunk(ex_id)
        if not chunk:
            break
        want = run.wanted_targets(chunk)
        for spec, params in run.specs:
            for engine in run.vis.engines:
                with engine.call_sizes.static():  # the bytes stored must not depend on timing (see call_sizes)
                    results = engine.run(chunk, spec, params, want)
                for result in results:
                    if result.error:
                        run.failure(result.example_id, engine.name, spec.name, result.error)
        ex_id = chunk[-1].id + 1  # past the chunk (and any unreadable position in it)
        run.advance(len(chunk))
