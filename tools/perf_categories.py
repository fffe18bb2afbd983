#!/usr/bin/env python3
"""Where a profile's time goes, by the parts of Escalator it passes through.

Reads `perf script -F comm,ip,sym` output of a profile taken with call
stacks (`perf record --call-graph dwarf`) and prints the share of samples
in each category. Samples of compiling plugins (Cranelift, the function
cache) and of criterion's own analysis are left out: the figure is the
steady state.

    perf record -F 499 --call-graph dwarf,16384 -o serve.data \\
        target/release/escalator bench-serve --concurrency 4 --events 4000
    perf script -i serve.data -F comm,ip,sym > serve.txt
    python3 tools/perf_categories.py serve.txt

    perf record -F 999 --call-graph dwarf,32768 -o pipe.data \\
        target/release/deps/pipeline-* --bench --profile-time 6 decide/fresh/1.4KB
    perf script -i pipe.data -F comm,ip,sym > pipe.txt
    python3 tools/perf_categories.py pipe.txt
    python3 tools/perf_categories.py --by-stage pipe.txt

`--by-stage` also splits a decision's samples by the pipeline's stage
they pass through (the triggers, both rounds; the router; the notifier;
the rest of `decide`). Guest code has no frames to tell its stage by:
`PIPELINE_RUNS=1` on the pipeline benchmark prints each call's time and
fuel instead.

Guest code compiled by Wasmtime has no symbols and stops the unwinder:
a sample whose stack reaches no host frame is counted as guest code (on
a call thread, `escalator-plugi…`, or on the caller's own, where calls
that cannot block run).
"""
import collections
import re
import sys

LEFT_OUT = re.compile(
    r"cranelift|FunctionCache|Component::new|Module::from|tempfile|dl_start"
    r"|criterion::analysis|criterion::stats|plotters|rayon"
)


# (where to look: the innermost frames or the whole stack, pattern,
# category), tried in order; the first match wins.
WAITING = [
    ("leaf", r"sched_yield", "waiting: spinning with sched_yield"),
    ("leaf", r"futex|\b__schedule|\bschedule\b", "waiting: thread sleep and wake-up"),
]
SQLITE = [
    ("stack", r"checkpointer", "SQLite: WAL checkpoints (background)"),
    ("stack", r"execute_batch[\s\S]*(Backend>::write|transaction)", "SQLite: commits (WAL writes)"),
    ("stack", r"Backend>::write|transaction", "SQLite: statements in write transactions"),
    ("stack", r"", "SQLite: reads"),
]
CALL_THREAD = [
    ("leaf", r"Lower|lower_|typecheck|Lift|lift_|realloc|options_memory",
     "plugins: ticket and context copied in, answers out"),
    ("stack", r"pagemap|reset_with|decommit|DecommitQueue|MemoryImageSlot|clear_and_remain"
     r"|deallocate_memor|deallocate_table|deallocate_component|deallocate_module",
     "plugins: instance teardown (memory reset)"),
    ("stack", r"instantiate|allocate_instance|Instance::new|OwnedImports|get_func_ref|Store::new"
     r"|StoreOpaque::new|initialize_defined_funcref|func_loc",
     "plugins: instantiation and store setup"),
    ("stack", r"escalator::|wasmtime::|std::|tokio::", "plugins: other host work on the call thread"),
]
HOST = [
    ("leaf", r"serde_json", "host: JSON"),
    ("leaf", r"malloc|_int_free|cfree|realloc", "host: malloc and free"),
    ("stack", r"hyper|axum|reqwest|tower|h2::", "host: HTTP"),
    ("stack", r"pipeline::|engine::", "host: engine and pipeline"),
]


def first_match(rules, leaf, stack):
    for where, pattern, label in rules:
        if re.search(pattern, leaf if where == "leaf" else stack):
            return label
    return None


def category(comm, frames):
    stack = "\n".join(frames)
    leaf = "\n".join(frames[:8])
    if LEFT_OUT.search(stack):
        return None
    found = first_match(WAITING, leaf, stack)
    if found is None and re.search(r"sqlite3|rusqlite", stack):
        found = first_match(SQLITE, leaf, stack)
    # A call runs on a call thread, or (a plugin that cannot block) on the
    # caller's own: there a sample with no named frame at all is in guest
    # code, where the unwinder stopped.
    in_guest = all(re.fullmatch(r"\[unknown\]|0x[0-9a-f]+", f) for f in frames)
    if found is None and (
        comm.startswith("escalator-plugi")
        or in_guest
        or re.search(r"shares::work|run_in_store|batch::inline|admit_and_run", stack)
    ):
        # No host frame at all: the unwinder stopped in guest code.
        found = first_match(CALL_THREAD, leaf, stack) or "plugins: guest code"
    return found or first_match(HOST, leaf, stack) or "other (kernel, runtime)"


# The pipeline's stages, by the function a sample passes through (the
# first match wins: a stage's calls sit below `decide`).
STAGES = [
    (r"pipeline::plan\b", "notifier"),
    (r"pipeline::route\b", "router"),
    (r"pipeline::run_triggers", "triggers"),
    (r"pipeline::decide", "decide, outside the calls"),
]


def stage(frames):
    stack = "\n".join(frames)
    for pattern, label in STAGES:
        if re.search(pattern, stack):
            return label
    return None


def main(path, by_stage):
    counts = collections.Counter()
    staged = collections.Counter()
    total = 0
    for sample in open(path, encoding="utf-8", errors="replace").read().split("\n\n"):
        lines = [l.strip() for l in sample.split("\n") if l.strip()]
        if len(lines) < 2:
            continue
        frames = [l.split(" ", 1)[1] if " " in l else l for l in lines[1:]]
        c = category(lines[0], frames)
        if c is None:
            continue
        counts[c] += 1
        total += 1
        if by_stage:
            staged[(stage(frames) or "no stage (guest code, other)", c)] += 1
    print(f"{total} samples")
    for c, n in sorted(counts.items(), key=lambda kv: (kv[0].split(":")[0], -kv[1])):
        print(f"{100 * n / total:5.1f} %  {c}")
    if by_stage:
        print()
        for s in [label for _, label in STAGES] + ["no stage (guest code, other)"]:
            rows = sorted(((c, n) for (st, c), n in staged.items() if st == s), key=lambda r: -r[1])
            print(f"{100 * sum(n for _, n in rows) / total:5.1f} %  {s}")
            for c, n in rows:
                print(f"   {100 * n / total:5.1f} %  {c}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--by-stage"]
    main(args[0], "--by-stage" in sys.argv[1:])
