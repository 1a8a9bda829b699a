"""`make bench`: how fast LCE is, against the bare work it does and the original Node.js system.

Not a test: a measurement. One invocation starts its own stack (or targets LCE_BENCH_URL), runs
every measure in interleaved rounds together with the bare run and the bare sandboxed run of the
same programs, and writes one JSON file under bench/results/ plus a printed table.
"""
