"""Partitioned detection: one detector definition, two executors (local processes, Spark).

A scan too large for one process divides its events by user (docs/PARTITIONS.md says which
key each detector divides on and why). The work then runs in two passes over the
partitions, with the scan's own process in between:

1. every partition computes its part of the population statistics the detectors compare
   with (`Detector.population_part`: peer baselines, feed shares, behaviour features);
2. the scan's process combines them (`population_combine`) and takes the decisions that
   need every user at once (`population_finish`: the anomaly model and its daily budget,
   the feed gaps), holding only those small tables, never the events;
3. every partition runs the detectors on its own events with the population statistics
   and the reference tables, and returns its findings.

`plan` chooses the partitions, `job` is one partition's work (the same function whoever
runs it), `local` runs it in forked worker processes and `spark` through
`applyInPandas` on a Spark cluster; `driver` ties the passes together.
"""
