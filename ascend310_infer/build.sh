#!/usr/bin/env bash
# Builds the inference runner (and, for the CPU runtime, the model converter test tool).
#
# Usage: bash ascend310_infer/build.sh [ascend|lite|ascend-sdk]
#   ascend      against the MindSpore installed on this Ascend machine (default).  The library is found
#               through the Python package `mindspore`; set MINDSPORE_PATH=<dir with include/api and lib/>
#               to choose another (e.g. an unpacked MindSpore Lite for Ascend).
#   lite        against the MindSpore Lite 2.0 CPU runtime, fetched from PyPI into third_party/ (cached),
#               plus tools/convert_to_lite: runs the runner on machines without an Ascend.
#   ascend-sdk  against libmindspore.so of the mindspore-ascend 1.10 wheel (fetched, cached), allowing
#               the absent CANN libraries: proves that the runner compiles and links for Ascend.
# Prints the build folder (binaries + mindspore_lib_dir, the folder to put on LD_LIBRARY_PATH) on stdout.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../scripts/common.sh"

backend="${1:-ascend}"
cmake_args=()
case "$backend" in
  ascend)
    root="${MINDSPORE_PATH:-}"
    if [ -z "$root" ]; then
      for py in "$VENV_DIR/bin/python" python3; do
        command -v "$py" >/dev/null 2>&1 || continue
        found="$("$py" -c 'import importlib.util, os
spec = importlib.util.find_spec("mindspore")
print(os.path.dirname(spec.origin) if spec and spec.origin else "")' 2>/dev/null || true)"
        [ -n "$found" ] && root="$found"
        [ -f "$root/include/api/model.h" ] && break
      done
    fi
    [ -f "${root:-/nonexistent}/include/api/model.h" ] || die "no MindSpore C++ inference API found (include/api/model.h${root:+ is missing in $root}).
    MindSpore 2.x wheels ship none: install MindSpore Lite for Ascend or mindspore-ascend 1.x and set
    MINDSPORE_PATH=<folder holding include/api and lib/>.  Without an Ascend, use: build.sh lite"
    library=mindspore
    for candidate in mindspore mindspore-lite; do
      if [ -f "$root/lib/lib$candidate.so" ]; then library="$candidate"; break; fi
    done
    cmake_args+=(-DMINDSPORE_ROOT="$root" -DMINDSPORE_LIBRARY="$library")
    ;;
  lite)
    ensure_mindspore_lite
    root="$LITE_DIR"
    cmake_args+=(-DMINDSPORE_ROOT="$root" -DMINDSPORE_LIBRARY=mindspore-extendrt_python -DBUILD_LITE_CONVERTER=ON)
    ;;
  ascend-sdk)
    ensure_mindspore_ascend_sdk
    root="$ASCEND_SDK_DIR"
    cmake_args+=(-DMINDSPORE_ROOT="$root" -DMINDSPORE_LIBRARY=mindspore -DALLOW_MISSING_DEVICE_LIBS=ON)
    ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown backend '$backend'; use ascend, lite or ascend-sdk" ;;
esac

ensure_cpp_toolchain
build="$HERE/build/$backend"
mkdir -p "$build"
(
  flock 9  # one build per folder at a time
  start=$SECONDS
  cmake -S "$HERE" -B "$build" -DCMAKE_BUILD_TYPE=Release "${cmake_args[@]}" >"$build/cmake.log" 2>&1 \
    || { tail -n 30 "$build/cmake.log" >&2; die "cmake configuration failed (log: $build/cmake.log)"; }
  cmake --build "$build" -j "$(nproc)" >>"$build/cmake.log" 2>&1 \
    || { grep -E "error|undefined" "$build/cmake.log" | head -n 30 >&2; die "build failed (log: $build/cmake.log)"; }
  echo "$root/lib" > "$build/mindspore_lib_dir"
  rm -f "$build/jasper_infer"  # the runner's former name: no caller may run a stale binary by it
  log "runner built for $backend in $((SECONDS - start)) s: $build/zoo_infer"
) 9>"$build.lock"
echo "$build"
