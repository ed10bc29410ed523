"""Markdown tables, the machine description, and the issue's targets checked against a run."""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Sequence
from typing import Any

# The page target (issue 18): within PAGE_RATIO_TARGET of raw captum's best where captum's call
# takes at least PAGE_SLOW_CALL_S; where it takes less, at most PAGE_FIXED_S per page plus
# PAGE_PER_EXAMPLE_S per example over it.
PAGE_RATIO_TARGET = 1.10
PAGE_SLOW_CALL_S = 0.050
PAGE_FIXED_S = 0.003
PAGE_PER_EXAMPLE_S = 0.0003
FIRST_FRACTION_TARGET = 0.5  # of the page time, for 16 examples
CACHE_HIT_TARGET_S = 0.050
RENDER_TARGET_US = 5000.0
MEMORY_FLAT_TOLERANCE = 0.15  # peak at the largest folder within 15 % of the peak at the smallest
PASS_RATIO_TARGET = 0.9  # the dataset pass's throughput, at least this fraction of a raw model(x) loop's
PRECOMPUTE_RATIO_TARGET = 0.95  # precompute's throughput, at least this fraction of a plain captum loop's


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str = "cpu") -> dict[str, Any]:
    import captum
    import torch

    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_at_start": load,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "captum": captum.__version__,
        "device": device if device == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})",
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def _table(header: Sequence[str], rows: list[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _passes(r: Any) -> str:
    return f"{r.passes} {'f+b' if r.backward else 'fwd'}" if r.passes else ""


def measured(pages: Sequence[Any] | None) -> list[Any]:
    """The cells that ran (not the ones skipped over the time budget)."""
    return [r for r in pages or [] if not hasattr(r, "skipped")]


def page_allowance_s(r: Any) -> float | None:
    """Seconds the page may take over raw captum's best where that takes under
    PAGE_SLOW_CALL_S; None where the ratio applies instead."""
    if r.raw_best_s >= PAGE_SLOW_CALL_S:
        return None
    return PAGE_FIXED_S + PAGE_PER_EXAMPLE_S * r.page_size


def page_target_met(r: Any) -> bool:
    allowance = page_allowance_s(r)
    if allowance is None:
        return r.ratio <= PAGE_RATIO_TARGET
    return r.server_page_s - r.raw_best_s <= allowance


def pages_table(pages: Sequence[Any]) -> str:
    header = [
        "model",
        "method (arguments)",
        "n",
        "passes / call",
        "captum batched ms",
        "captum per-example ms",
        "server page ms",
        "ratio",
        "median ratio",
        "CPU ratio",
        "ratio incl. forward",
        "server extra ms / example",
        "first example ms",
        "stream page ms",
        "first / stream",
        "cache hit ms",
    ]
    rows = []
    for r in pages:
        if hasattr(r, "skipped"):
            rows.append(
                [
                    r.model,
                    f"{r.method} ({r.arguments})",
                    str(r.page_size),
                    _passes(r),
                    f"{r.skipped} (estimated {r.estimated_cell_s:.0f} s > {r.budget_s:.0f} s)",
                ]
                + [""] * (len(header) - 5)
            )
            continue
        rows.append(
            [
                r.model,
                f"{r.method} ({r.arguments})",
                str(r.page_size),
                _passes(r),
                _ms(r.raw_batched_s),
                _ms(r.raw_per_example_s),
                _ms(r.server_page_s),
                f"{r.ratio:.2f}",
                f"{r.median_ratio:.2f}",
                f"{r.cpu_ratio:.2f}",
                f"{r.ratio_with_forward:.2f}",
                _ms(r.overhead_per_example_s),
                _ms(r.stream_first_s),
                _ms(r.stream_total_s),
                f"{r.first_fraction:.2f}",
                _ms(r.cache_hit_s),
            ]
        )
    return _table(header, rows)


def render_table(render: Sequence[Any]) -> str:
    header = ["method", "sign", "draw µs", "PNG + base64 µs", "total µs", "PNG KB", "captum + matplotlib µs"]
    rows = [
        [
            r.method,
            r.sign,
            f"{r.draw_us:.0f}",
            f"{r.encode_us:.0f}",
            f"{r.total_us:.0f}",
            f"{r.png_kb:.0f}",
            "" if r.captum_matplotlib_us is None else f"{r.captum_matplotlib_us:.0f}",
        ]
        for r in render
    ]
    return _table(header, rows)


def memory_table(memory: Sequence[Any]) -> str:
    header = [
        "files",
        "image side",
        "pages read",
        "RSS after first page MB",
        "after paging MB",
        "after the last page MB",
        "peak MB",
        "last page s",
    ]
    rows = [
        [
            str(r.files),
            str(r.side),
            f"{r.pages} x {r.page_size} + last",
            f"{r.rss_built_mb:.0f}",
            f"{r.rss_paged_mb:.0f}",
            f"{r.rss_last_mb:.0f}",
            f"{r.peak_mb:.0f}",
            f"{r.last_page_s:.1f}",
        ]
        for r in memory
    ]
    return _table(header, rows)


def pass_table(passes: Sequence[Any]) -> str:
    header = [
        "case",
        "examples",
        "raw ex/s",
        "pass ex/s",
        "ratio",
        "CPU ratio",
        "median ratio",
        "pass peak RSS growth MB",
        "raw loop peak RSS growth MB",
        "records MB",
        "top-1 = raw argmax",
    ]
    rows = [
        [
            r.case,
            str(r.examples),
            f"{r.raw_rate:.0f}",
            f"{r.pass_rate:.0f}",
            f"{r.ratio:.2f}",
            f"{r.cpu_ratio:.2f}",
            f"{r.median_ratio:.2f}",
            f"{r.pass_growth_mb:.0f}",
            f"{r.raw_growth_mb:.0f}",
            f"{r.records_mb:.1f}",
            f"{r.agree}/{r.files}" + ("" if r.confusion_equal else " (confusion matrices differ)"),
        ]
        for r in passes
    ]
    return _table(header, rows)


def targets(
    pages: Sequence[Any] | None,
    render: Sequence[Any] | None,
    memory: Sequence[Any] | None,
    passes: Sequence[Any] | None = None,
    precompute: Any | None = None,
    stored: Any | None = None,
) -> list[dict[str, Any]]:
    """Each target of the issue: met or not, and the figures behind the verdict."""
    out: list[dict[str, Any]] = []
    skipped = [r for r in pages or [] if hasattr(r, "skipped")]
    pages = measured(pages)
    if pages:
        over = [r for r in pages if not page_target_met(r)]

        def miss(r: Any) -> str:
            allowance = page_allowance_s(r)
            if allowance is None:
                return f"{r.model} {r.method} n={r.page_size} ({r.ratio:.2f}x of {r.raw_best_s * 1e3:.0f} ms)"
            return (
                f"{r.model} {r.method} n={r.page_size} (+{(r.server_page_s - r.raw_best_s) * 1e3:.1f} ms over "
                f"{r.raw_best_s * 1e3:.1f} ms, allowed {allowance * 1e3:.1f} ms)"
            )

        slow = sum(page_allowance_s(r) is None for r in pages)
        detail = (
            f"all {len(pages)} cells ({slow} at {PAGE_SLOW_CALL_S * 1e3:.0f} ms or more, {len(pages) - slow} under)"
            if not over
            else "missed in: " + "; ".join(miss(r) for r in over)
        )
        if skipped:
            detail += f"; {len(skipped)} cell(s) skipped over the time budget, not judged"
        out.append(
            {
                "target": f"page within {PAGE_RATIO_TARGET:.2f}x of raw captum's best where captum takes at "
                f"least {PAGE_SLOW_CALL_S * 1e3:.0f} ms, else at most {PAGE_FIXED_S * 1e3:.0f} ms per "
                f"page + {PAGE_PER_EXAMPLE_S * 1e3:.1f} ms per example over it",
                "met": not over,
                "detail": detail,
            }
        )
        sixteen = [r for r in pages if r.page_size == 16]
        if sixteen:
            slow = [r for r in sixteen if r.first_fraction >= FIRST_FRACTION_TARGET]
            worst = max(sixteen, key=lambda r: r.first_fraction)
            out.append(
                {
                    "target": "first example in under half the page time (16 examples)",
                    "met": not slow,
                    "detail": f"worst {worst.first_fraction:.2f} ({worst.model} {worst.method})",
                }
            )
        slow_hits = [r for r in pages if r.cache_hit_s >= CACHE_HIT_TARGET_S]
        out.append(
            {
                "target": f"cache hit under {CACHE_HIT_TARGET_S * 1e3:.0f} ms",
                "met": not slow_hits,
                "detail": "all cells"
                if not slow_hits
                else "over in: "
                + "; ".join(f"{r.model} {r.method} n={r.page_size} ({r.cache_hit_s * 1e3:.0f} ms)" for r in slow_hits),
            }
        )
    if render:
        heat = [r for r in render if r.method in ("heat_map", "blended_heat_map")]
        worst = max(heat or render, key=lambda r: r.total_us)
        out.append(
            {
                "target": f"224x224 heat map rendered in under {RENDER_TARGET_US / 1e3:.0f} ms",
                "met": worst.total_us < RENDER_TARGET_US,
                "detail": f"slowest heat map: {worst.method}/{worst.sign} {worst.total_us:.0f} µs",
            }
        )
    for side in sorted({r.side for r in memory or []}):
        rows = [r for r in memory or [] if r.side == side]
        if len(rows) < 2:
            continue
        small, large = rows[0], rows[-1]
        growth = large.peak_mb - small.peak_mb
        out.append(
            {
                "target": f"memory flat in the folder size ({side}x{side} images)",
                "met": growth <= MEMORY_FLAT_TOLERANCE * small.peak_mb,
                "detail": f"peak {small.peak_mb:.0f} MB at {small.files} files, {large.peak_mb:.0f} MB at "
                f"{large.files} files ({growth:+.0f} MB for {large.files / small.files:.0f}x the files)",
            }
        )
    if passes:
        slow = [r for r in passes if r.ratio < PASS_RATIO_TARGET]
        worst = min(passes, key=lambda r: r.ratio)
        out.append(
            {
                "target": f"dataset pass at least {PASS_RATIO_TARGET:.1f}x a raw model(x) loop's throughput",
                "met": not slow,
                "detail": f"lowest {worst.ratio:.2f}x ({worst.case}, CPU ratio {worst.cpu_ratio:.2f})",
            }
        )
        differ = [r for r in passes if r.agree != r.files or r.examples != r.files or not r.confusion_equal]
        out.append(
            {
                "target": "the dataset pass covers every file and predicts what the raw loop does",
                "met": not differ,
                "detail": "all cases"
                if not differ
                else "differs in: "
                + "; ".join(f"{r.case} ({r.agree}/{r.files} top-1 agree, {r.examples} covered)" for r in differ),
            }
        )
    if precompute is not None:
        p = precompute
        out.append(
            {
                "target": f"precompute at least {PRECOMPUTE_RATIO_TARGET:.2f}x a plain captum loop's throughput",
                "met": p.ratio >= PRECOMPUTE_RATIO_TARGET,
                "detail": f"{p.ratio:.2f}x (CPU ratio {p.cpu_ratio:.2f}), {p.examples} examples",
            }
        )
        out.append(
            {
                "target": "precompute stores every example, its top-1 the plain loop's argmax",
                "met": p.stored == p.examples and p.agree == p.examples,
                "detail": f"{p.stored}/{p.examples} stored, {p.agree}/{p.examples} agree",
            }
        )
        if p.stored_page_ms:
            best = min(p.stored_page_ms)
            out.append(
                {
                    "target": "a page of stored examples under 50 ms of server time, with no forward pass",
                    "met": best < 50.0 and p.stored_page_forwards == 0,
                    "detail": f"{best:.1f} ms best, {sorted(p.stored_page_ms)[len(p.stored_page_ms) // 2]:.1f} ms "
                    f"median, {p.stored_page_forwards} forward passes",
                }
            )
        if p.ray:
            differ = [r.workers for r in p.ray if not r.equal]
            out.append(
                {
                    "target": "the Ray executor stores what the local one stores, byte for byte",
                    "met": not differ,
                    "detail": "every worker count" if not differ else f"differs with {differ} workers",
                }
            )
    if stored is not None and stored.visits:
        from .stored import target as stored_target

        out.append(stored_target(stored))
    return out


def markdown(
    info: dict[str, Any],
    pages: Sequence[Any] | None,
    render: Sequence[Any] | None,
    memory: Sequence[Any] | None,
    verdicts: list[dict[str, Any]],
    elapsed_s: float,
    passes: Sequence[Any] | None = None,
    precompute: Any | None = None,
    stored: Any | None = None,
) -> str:
    parts = [
        f"## Benchmarks ({info['date']}, {info['cpu']}, {info['cores']} cores, torch {info['torch']} with "
        f"{info['torch_threads']} threads, captum {info['captum']}, {info.get('device', 'cpu')})",
        "",
    ]
    if pages:
        parts += [
            "### One page: the server (HTTP) against raw captum on the same inputs",
            "",
            "Times are the best of the repeats (as many server pages as captum calls, alternating). "
            "*captum*: the attribution call alone, on the whole page and one example at a time; *ratio*: "
            "server page / the faster of the two; *median ratio*: each round's best page over its faster "
            "captum call, the median over the rounds (the two sides of a round ran seconds apart); *CPU "
            "ratio*: the ratio in process CPU time; *ratio incl. forward*: the ratio with the forward pass "
            "that picks the targets added to captum's side; "
            "*server extra / example*: (server page - faster captum) / n. *first example*: streaming page, "
            "request sent to the first example received. *passes / call*: the model passes (rows) one captum "
            "call on the page makes, forward+backward (f+b) or forward only (fwd).",
            "",
            pages_table(pages),
            "",
        ]
    if render:
        parts += ["### Rendering one 224x224 image (attribution -> PNG data URL)", "", render_table(render), ""]
    if memory:
        parts += [
            "### Memory while paging through generated image folders (one process per folder)",
            "",
            memory_table(memory),
            "",
        ]
    if passes:
        parts += [
            "### The dataset pass against a raw `model(x)` loop over the same folder (one process per case)",
            "",
            "Rates are the best of the rounds (pass and raw alternating); *ratio*: pass ex/s / raw ex/s; *CPU "
            "ratio*: the same in process CPU time; *median ratio*: from the median rounds. Peak RSS growth: "
            "resident memory's peak over one run above its level before it (the largest over the rounds).",
            "",
            pass_table(passes),
            "",
        ]
    if precompute is not None:
        from .precompute import table as precompute_table

        ray_start = (
            ""
            if precompute.ray_start_s is None
            else f" Ray's local instance (2 CPUs) took {precompute.ray_start_s:.1f} s to start, before the Ray runs."
        )
        parts += [
            "### precompute against a plain captum loop, and on Ray (one process, the same images)",
            "",
            "IntegratedGradients (16 steps, zero baseline) on the small CNN; the plain loop: batches of 16, the "
            "targets' forward pass and captum's attribute, nothing kept. Rates are the best of the rounds "
            "(plain and local alternating); *vs plain*: plain time / precompute time; *CPU vs plain*: the "
            "same in process CPU time. The Ray runs are one round each, their actors' start included (and "
            "given apart)." + ray_start + (f" {precompute.note}." if precompute.note else ""),
            "",
            precompute_table(precompute),
            "",
        ]
    if stored is not None and stored.visits:
        from .stored import table as stored_table

        parts += [
            f"### The first visit of a stored page in a fresh process ({stored.page_size} examples, "
            f"{stored.side}x{stored.side})",
            "",
            f"A new Python process per round builds the visualizer on a store precomputed before, waits "
            f"{stored.settle_s:g} s (its start-up's background work), then times the first page, the same page "
            "again (*second*) and another stored page (*other*: the page's own work, without the process's "
            "first-use costs). Medians over the rounds; CPU: the child's process CPU time (all threads). "
            "*start-up*: building the visualizer (and starting its server).",
            "",
            stored_table(stored),
            "",
        ]
    if verdicts:
        parts += ["### Targets", ""]
        parts += [f"- {'met' if v['met'] else 'MISSED'}: {v['target']} ({v['detail']})" for v in verdicts]
        parts.append("")
    parts.append(f"Total time {elapsed_s:.0f} s.")
    return "\n".join(parts)
