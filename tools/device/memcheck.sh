#!/usr/bin/env bash
# On the GPU machine: compute-sanitizer memcheck over the kernel test binaries
# of the bundle (.device-bundle/tests/*_cuda_test); one log per binary in $OUT.
set -uo pipefail
bundle="$(pwd)/.device-bundle"
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [[ -z "$sanitizer" ]]; then echo "compute-sanitizer not found"; exit 1; fi
"$bundle/run.sh" true  # unpacks the bundle
status=0
for path in "$bundle"/tests/*_cuda_test; do
  name=$(basename "$path")
  [[ "$name" == cuda_backend_fault_test ]] && continue  # faults on purpose
  log="${OUT:-/tmp}/memcheck-$name.log"
  "$bundle/run.sh" "$sanitizer" --tool memcheck --error-exitcode 9 "tests/$name" >"$log" 2>&1
  rc=$?
  echo "$name: memcheck exit $rc, $(grep -E 'ERROR SUMMARY' "$log" | tail -1)"
  [[ $rc -eq 0 ]] || status=1
done
exit $status
