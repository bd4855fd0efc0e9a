#!/usr/bin/env bash
# Mutation testing of the detection, evidence and safety core (issue 23). Run by hand, not in CI.
#
# For each core module, mutmut (3.x) makes small deliberate bugs in that module only and runs
# the fast tests that exercise it against each; a mutant no test notices "survives". The score
# is detected / all, where detected = killed + timed out (the tests did not pass) and the rest
# survived or is reached by no fast test. docs/MUTATION.md holds
# the last table and the survivors judged equivalent.
#
#   scripts/mutation.sh                 every core module
#   scripts/mutation.sh lock masking    only these (names from the table below)
#   MUTATION_WORK=/tmp/x scripts/mutation.sh   where the per-module copies go
#                                              (default: /tmp/emraudit-mutation)
#   MUTATION_KEEP=1 ...                 reuse earlier results of unchanged mutants
#   MUTATION_KEEP=1 MUTATION_RERUN=survivors ...
#                                       run again only the mutants the last run of the
#                                       module left survived or without tests (after tests
#                                       were only added, production code unchanged: a
#                                       killed mutant stays killed)
#   MUTATION_KEEP=1 MUTATION_RERUN=survivors MUTATION_TESTS="tests/x.py" ...
#                                       the same, the survivors run against these test files
#                                       only (they already survived the module's other
#                                       tests): a quick screen of new tests
#   MUTATION_SAMPLE=300 ...             a fixed random sample of each module's mutants
#   MUTATION_TIMEBOX=1800 ...           stop each module after this many seconds (the
#                                       mutants not reached are counted as not checked)
#
# One core only (the machine is shared): mutmut runs one child at a time, under nice, with
# the numeric libraries held to one thread. Each module runs in its own copy of src/ and
# tests/ (mutmut's state lives beside the copy), so modules never see each other's mutants.
# mutmut rather than cosmic-ray: it runs pytest in-process and forks one child per mutant
# from a process that has already imported pandas and the tests, so a mutant costs only its
# tests (cosmic-ray starts a fresh interpreter and pytest per mutant: seconds of imports
# each, thousands of mutants); the src layout works once the copy's src/ is first on
# sys.path, which mutmut does itself.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
MUTMUT=$(dirname "$PY")/mutmut
WORK=${MUTATION_WORK:-/tmp/emraudit-mutation}
SAMPLE=${MUTATION_SAMPLE:-0}        # mutants drawn per module (0: all)
TIMEBOX=${MUTATION_TIMEBOX:-0}      # seconds per module (0: no limit)
[ -x "$MUTMUT" ] || { echo "mutmut not found: .venv/bin/pip install -e '.[test]'" >&2; exit 2; }

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMEXPR_NUM_THREADS=1 \
       NUMBA_NUM_THREADS=1 POLARS_MAX_THREADS=1 RAYON_NUM_THREADS=1 PYTHONHASHSEED=0
unset EMRAUDIT_TEST_PG_URL CI   # fast tests only: the PostgreSQL variants skip

# name | files to mutate (under src/emraudit) | fast tests that exercise them | mutants to run
# (mutmut name patterns; empty: every mutant of the files). Where only part of a file is core
# (case ids in cases.py, the count invariant in ingest.py and the connectors) only the
# functions of that part are mutated.
MODULES=$(cat <<'EOF'
explain|detectors/explain.py|tests/test_explain.py tests/test_behaviour_explain.py tests/test_behaviour_detectors.py tests/test_behaviour_explain_all.py|
care|detectors/care.py|tests/test_detect_care.py tests/test_behaviour_detectors.py tests/test_feeds.py tests/test_behaviour_care_all.py|
cred|detectors/cred.py|tests/test_detect_cred.py tests/test_detect_external.py tests/test_behaviour_detectors.py tests/test_behaviour_cred_evidence.py tests/test_behaviour_cred_all.py|
snoop|detectors/snoop.py|tests/test_detect_snoop.py tests/test_behaviour_detectors.py tests/test_behaviour_snoop_evidence.py tests/test_behaviour_snoop_all.py|
bulk|detectors/bulk.py|tests/test_detect_bulk.py tests/test_behaviour_detectors.py tests/test_behaviour_bulk_all.py|
copy|detectors/copy.py|tests/test_detect_copy.py tests/test_behaviour_detectors.py tests/test_behaviour_copy_all.py|
ingest|ingest.py|tests/test_ingest.py tests/test_behaviour_counts.py tests/test_one_writer.py tests/test_progress.py tests/test_behaviour_ingest_counts_more.py|emraudit.ingest.x_ingest_source__mutmut_* emraudit.ingest.x__quarantine_rows__mutmut_* emraudit.ingest.x__commit_batch__mutmut_* emraudit.ingest.x__refuse_foreign_copies__mutmut_* emraudit.ingest.xǁSourceResultǁadd__mutmut_* emraudit.ingest.x_format_results__mutmut_*
connectors|connectors/csv.py connectors/filebase.py|tests/test_connector_csv.py tests/test_behaviour_counts.py tests/test_connector_fhir.py tests/test_behaviour_csv_counts.py|emraudit.connectors.csv.xǁCsvConnectorǁ_parse__mutmut_* emraudit.connectors.csv.xǁCsvConnectorǁ_fast__mutmut_* emraudit.connectors.csv.xǁCsvConnectorǁ_finish__mutmut_* emraudit.connectors.filebase.xǁLineFileConnectorǁbatches__mutmut_* emraudit.connectors.filebase.xǁLineFileConnectorǁquarantine_frame__mutmut_* emraudit.connectors.filebase.xǁLineFileConnectorǁ_whole_file__mutmut_*
masking|reports/masking.py|tests/test_masking.py tests/test_behaviour_masking.py tests/test_masking_incremental.py tests/test_masking_outputs.py tests/test_behaviour_masking_batch.py|
cases|cases.py|tests/test_cases.py tests/test_behaviour_case_ids.py|emraudit.cases.x_case_id_for__mutmut_* emraudit.cases.x__local_day__mutmut_* emraudit.cases.x_assign_cases__mutmut_* emraudit.cases.x_count_cases__mutmut_* emraudit.cases.x_annotate__mutmut_* emraudit.cases.x_feed_gap_case_id__mutmut_*
lock|lock.py|tests/test_lock.py tests/test_behaviour_lock.py|
EOF
)

# the table's rows from `mutmut results --all true`, and the sample of mutants to run
TABLE_PY=$(cat <<'PYEOF'
import collections, fnmatch, random, sys

def statuses(path, patterns):
    for line in open(path, encoding="utf-8"):
        if ":" in line and "__mutmut_" in line:
            mutant, status = (x.strip() for x in line.rsplit(":", 1))
            if not patterns or any(fnmatch.fnmatchcase(mutant, p) for p in patterns):
                yield mutant, status

cmd = sys.argv[1]
if cmd == "header":
    print(f"{'module':<11} {'mutants':>8} {'killed':>7} {'timeout':>8} {'survived':>9} "
          f"{'no_tests':>8} {'score':>7}")
elif cmd == "sample":
    path, n, patterns = sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    names = sorted(m for m, _ in statuses(path, patterns))
    print(" ".join(sorted(random.Random(23).sample(names, min(n, len(names))))))
elif cmd == "survivors":
    path, patterns = sys.argv[2], sys.argv[3:]
    print(" ".join(sorted(m for m, s in statuses(path, patterns)
                          if s in ("survived", "suspicious", "no tests"))))
elif cmd == "merge":
    # a rerun of some mutants: mutmut resets the others to "not checked"; keep their
    # earlier verdicts (tests only added, production code unchanged)
    before, after = sys.argv[2], sys.argv[3]
    old = dict(statuses(before, []))
    for line in open(after, encoding="utf-8").read().splitlines():
        if line.rstrip().endswith(": not checked") and "__mutmut_" in line:
            mutant = line.rsplit(":", 1)[0].strip()
            if mutant in old:
                line = line.rsplit(":", 1)[0] + ": " + old[mutant]
        print(line)
elif cmd == "row":
    path, name, secs, patterns = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
    counts = collections.Counter(s for _, s in statuses(path, patterns))
    killed = counts["killed"] + counts["segfault"]
    timeout = counts["timeout"]                   # the tests did not pass: detected
    survived = counts["survived"] + counts["suspicious"]
    no_tests = counts["no tests"]                 # no fast test reaches it: not protected
    judged = killed + timeout + survived + no_tests
    score = f"{100 * (killed + timeout) / judged:.1f}%" if judged else "n/a"
    other = {k: v for k, v in counts.items() if k not in
             ("killed", "segfault", "survived", "suspicious", "timeout", "no tests")}
    print(f"{name:<11} {judged:>8} {killed:>7} {timeout:>8} {survived:>9} {no_tests:>8} "
          f"{score:>7}" + (f"  {other}" if other else "") + f"  ({secs} s)")
PYEOF
)

wanted=("$@")
selected() {
  [ ${#wanted[@]} -eq 0 ] && return 0
  local w; for w in "${wanted[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1
}

mkdir -p "$WORK"
table="$WORK/table.txt"
"$PY" -c "$TABLE_PY" header > "$table"
mapfile -t rows <<< "$MODULES"     # not read from stdin in the loop: pytest owns stdin
for row in "${rows[@]}"; do
  IFS='|' read -r name globs tests patterns <<< "$row"
  [ -n "$name" ] || continue
  selected "$name" || continue
  if [ -n "${MUTATION_TESTS:-}" ]; then
    [ "${MUTATION_RERUN:-}" = survivors ] || {
      echo "MUTATION_TESTS is only for MUTATION_RERUN=survivors" >&2; exit 2; }
    tests=$MUTATION_TESTS
  fi
  dir="$WORK/$name"
  [ "${MUTATION_KEEP:-0}" = 1 ] || rm -rf "$dir"
  mkdir -p "$dir"
  rm -rf "$dir/src" "$dir/tests" "$dir/sample_logs"
  cp -a src tests sample_logs "$dir/"
  present=()
  for t in $tests; do [ -f "$t" ] && present+=("$t"); done
  only=()
  for g in $globs; do only+=("\"src/emraudit/$g\""); done
  sel=()
  for t in "${present[@]}"; do sel+=("\"$t\""); done
  {
    sed '/^\[tool\.mutmut\]/,$d' pyproject.toml
    echo
    echo '[tool.mutmut]'
    echo "source_paths = [\"src\"]"
    echo "only_mutate = [$(IFS=,; echo "${only[*]}")]"
    echo "pytest_add_cli_args_test_selection = [$(IFS=,; echo "${sel[*]}")]"
    echo 'pytest_add_cli_args = ["-p", "no:cacheprovider", "-m", "not slow and not browser and not postgres"]'
    echo 'also_copy = ["sample_logs/"]'
    echo 'use_git_change_detection = false'
    echo 'timeout_multiplier = 5.0'
  } > "$dir/pyproject.toml"
  echo "== $name: $globs against ${present[*]}" >&2
  start=$(date +%s)
  # a mutant of lock.py can turn "is this pid alive" (signal 0) into SIGHUP sent to a pid the
  # tests name: mutmut's own process ignores it (trap), and so do its children
  mm() { ( trap "" HUP; cd "$dir" && nice -n 10 "$@" < /dev/null ); }
  names=$patterns
  counted=names                     # the row counts the mutants run (a sample) ...
  if [ "${MUTATION_KEEP:-0}" = 1 ] && [ "${MUTATION_RERUN:-}" = survivors ]; then
    [ -f "$dir/results.txt" ] || { echo "no earlier run of $name in $dir" >&2; exit 2; }
    # shellcheck disable=SC2086
    names=$("$PY" -c "$TABLE_PY" survivors "$dir/results.txt" $patterns)
    cp "$dir/results.txt" "$dir/results.before-rerun.txt"
    [ -n "$names" ] || names="no-such-mutant"          # nothing left to run
    counted=patterns                # ... or all of the module's, earlier results included
  fi
  if [ "$SAMPLE" -gt 0 ]; then
    # generate the mutants and the test map only (a name nothing matches), then draw a
    # fixed sample of the module's mutants (seeded: the same sample on the same code)
    mm "$MUTMUT" run --max-children 1 "no-such-mutant" > "$dir/generate.log" 2>&1 || true
    ( cd "$dir" && "$MUTMUT" results --all true > "$dir/all.txt" 2>&1 ) || true
    names=$("$PY" -c "$TABLE_PY" sample "$dir/all.txt" "$SAMPLE" $patterns)
  fi
  # shellcheck disable=SC2086  # the names and patterns are words
  mm timeout --signal=INT --kill-after=60 "$TIMEBOX" "$MUTMUT" run --max-children 1 $names \
      > "$dir/run.log" 2>&1 || echo "   mutmut stopped (time box or error): $dir/run.log" >&2
  ( cd "$dir" && "$MUTMUT" results --all true > "$dir/results.txt" 2>&1 ) || true
  if [ "$counted" = patterns ]; then
    "$PY" -c "$TABLE_PY" merge "$dir/results.before-rerun.txt" "$dir/results.txt" \
        > "$dir/results.merged.txt" && mv "$dir/results.merged.txt" "$dir/results.txt"
  fi
  # shellcheck disable=SC2086
  "$PY" -c "$TABLE_PY" row "$dir/results.txt" "$name" \
      "$(( $(date +%s) - start ))" ${!counted} >> "$table"
  tail -1 "$table" >&2
done < /dev/null
echo
cat "$table"
echo "survivors: (cd $WORK/<module> && $MUTMUT results; $MUTMUT show <name>)"
