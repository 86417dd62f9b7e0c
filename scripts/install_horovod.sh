#!/usr/bin/env bash
# Build Horovod 0.28.1 (the newest release, source-only) for the TensorFlow in the venv, with what the machine
# offers, printed before the build:
#   GPU operations  NCCL where TensorFlow is a CUDA build and a CUDA toolkit of the same major version is found
#                   (HOROVOD_CUDA_HOME alone if set, else CUDA_HOME, the nvcc on PATH, /usr/local/cuda), with
#                   the NCCL of TensorFlow's CUDA packages (nvidia-nccl-cu12) or HOROVOD_NCCL_HOME; otherwise
#                   none (GPU tensors are all-reduced through host memory)
#   controllers     MPI where an MPI compiler wrapper (mpicxx) is on PATH (Debian: apt-get install libopenmpi-dev
#                   openmpi-bin), and gloo always (horovodrun --gloo)
# No PyTorch, no MXNet. NEZHA pretraining uses it with --horovod, launched by horovodrun (or mpirun: MPI builds).
#
#   PYTHON=.venv/bin/python bash scripts/install_horovod.sh          (`make horovod` does this)
#   PYTHON=.venv/bin/python bash scripts/install_horovod.sh --plan   print what it would build, build nothing
#
# Settings: PYTHON (default .venv/bin/python of the checkout, else python3), MAKEFLAGS, TMPDIR.
#
# Idempotent: exits at once when the installed Horovod was built with these features, and builds again when
# they differ (an MPI installed since, the other TensorFlow flavour). About 4 minutes on 2 cores; NCCL builds
# compile their CUDA kernels for every architecture nvcc knows unless HOROVOD_BUILD_CUDA_CC_LIST (e.g. 80,90)
# names some. Needs a C++17 compiler, make, and CMake 3.13 to 3.x (a pinned CMake from PyPI is installed into
# the venv when the system has none that fits).
set -euo pipefail

HOROVOD_VERSION=0.28.1
# CMake 4 refuses the `cmake_minimum_required(VERSION 2.8.12)` of Horovod's bundled gloo; 3.31 accepts it.
CMAKE_PIN=cmake==3.31.6
# Horovod's own runtime requirements (setup.py install_requires), pinned so the build is repeatable.
RUNTIME_PINS=(cloudpickle==3.1.3 psutil==7.2.2 PyYAML==6.0.4 packaging==26.3)

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PLAN_ONLY=0
[[ "${1:-}" == --plan ]] && PLAN_ONLY=1
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}

[ -x "$PYTHON" ] || command -v "$PYTHON" >/dev/null 2>&1 \
    || fail "$PYTHON: no Python interpreter here (set PYTHON, or run 'make venv' first)"

# TensorFlow's version and, for a CUDA build, its CUDA major version ('-' for a CPU build).
read -r TF_VERSION TF_CUDA < <("$PYTHON" -c "
import tensorflow as tf
build = tf.sysconfig.get_build_info()
print(tf.__version__, str(build.get('cuda_version', '-')).split('.')[0] if build.get('is_cuda_build') else '-')
" 2>/dev/null) || fail "TensorFlow does not import with $PYTHON; install it first ('make venv')"

# ---- what this machine offers: NCCL (CUDA toolkit + NCCL), MPI; gloo is always built
NCCL=0 MPI=0 CUDA_HOME_FOUND="" NCCL_LIB="" WHY_NO_NCCL=""
if [[ "$TF_CUDA" == - ]]; then
    WHY_NO_NCCL="TensorFlow is the CPU build"
else
    seen=()
    nvcc_home=$(command -v nvcc >/dev/null 2>&1 && dirname "$(dirname "$(command -v nvcc)")" || true)
    homes=("${CUDA_HOME:-}" "$nvcc_home" /usr/local/cuda)
    [[ -n "${HOROVOD_CUDA_HOME:-}" ]] && homes=("$HOROVOD_CUDA_HOME")   # the user's choice, alone
    for home in "${homes[@]}"; do
        [[ -n "$home" && -x "$home/bin/nvcc" ]] || continue
        release=$("$home/bin/nvcc" --version | sed -n 's/.*release \([0-9][0-9]*\)\..*/\1/p')
        if [[ "$release" == "$TF_CUDA" ]]; then CUDA_HOME_FOUND=$home; break; fi
        seen+=("$home (CUDA $release)")
    done
    NCCL_HOME_GIVEN=${HOROVOD_NCCL_HOME:-}
    if [[ -n "$NCCL_HOME_GIVEN" ]]; then
        NCCL_LIB=$NCCL_HOME_GIVEN/lib
    else
        package=$("$PYTHON" -c "import nvidia.nccl as n; print(list(n.__path__)[0])" 2>/dev/null || true)
        [[ -n "$package" && -f "$package/include/nccl.h" ]] && NCCL_LIB=$package/lib
    fi
    if [[ -z "$CUDA_HOME_FOUND" ]]; then
        WHY_NO_NCCL="no CUDA $TF_CUDA toolkit (TensorFlow's CUDA) found${seen:+, only ${seen[*]}}:"
        WHY_NO_NCCL+=" install one or set HOROVOD_CUDA_HOME"
    elif [[ -z "$NCCL_LIB" ]]; then
        WHY_NO_NCCL="no NCCL: neither HOROVOD_NCCL_HOME nor TensorFlow's nvidia-nccl-cu$TF_CUDA package"
    else
        NCCL=1
    fi
fi
command -v mpicxx >/dev/null 2>&1 && MPI=1
WANTED="$NCCL $MPI 1"

describe() {
    # "NCCL MPI GLOO" flags as words.
    local nccl mpi gloo
    read -r nccl mpi gloo <<<"$1"
    local ops="no GPU operations"
    [[ "$nccl" == 1 ]] && ops="NCCL GPU operations"
    local controllers=()
    [[ "$mpi" == 1 ]] && controllers+=(MPI)
    [[ "$gloo" == 1 ]] && controllers+=(gloo)
    echo "$ops, controllers: ${controllers[*]:-none}"
}

echo "Horovod $HOROVOD_VERSION for TensorFlow $TF_VERSION: $(describe "$WANTED")"
[[ "$NCCL" == 1 ]] && echo "  NCCL from $NCCL_LIB, CUDA toolkit $CUDA_HOME_FOUND"
[[ "$NCCL" == 0 ]] && echo "  no NCCL: $WHY_NO_NCCL"
[[ "$MPI" == 0 ]] && echo "  no MPI: no mpicxx on PATH (Debian: apt-get install libopenmpi-dev openmpi-bin)"
[[ "$PLAN_ONLY" == 1 ]] && exit 0

INSTALLED=$("$PYTHON" -c "import horovod.tensorflow as hvd
print(int(bool(hvd.nccl_built())), int(bool(hvd.mpi_built())), int(bool(hvd.gloo_built())))" 2>/dev/null || true)
if [[ "$INSTALLED" == "$WANTED" ]]; then
    echo "Horovod is already installed for $("$PYTHON" -c 'import sys; print(sys.executable)') with these features:" \
        "$("$PYTHON" -c 'import horovod; print(horovod.__version__)')"
    exit 0
fi
if "$PYTHON" -m pip show -q horovod >/dev/null 2>&1; then
    echo "The installed Horovod has ${INSTALLED:+$(describe "$INSTALLED")}${INSTALLED:-no working TensorFlow ops}:" \
        "building again."
    "$PYTHON" -m pip uninstall -y -q horovod || fail "could not uninstall the installed Horovod"
fi

for tool in make g++; do
    command -v "$tool" >/dev/null 2>&1 \
        || fail "'$tool' not found: install a C++ toolchain (Debian: apt-get install build-essential)"
done

cmake_fits() {
    # Prints nothing; succeeds when $1 is a CMake with 3.13 <= version < 4.
    local version
    version=$("$1" --version 2>/dev/null | sed -n 's/^cmake version \([0-9][0-9.]*\).*/\1/p') || return 1
    [ -n "$version" ] || return 1
    "$PYTHON" - "$version" <<'EOF'
import sys
major, minor = (int(x) for x in sys.argv[1].split(".")[:2])
sys.exit(0 if (major, minor) >= (3, 13) and major < 4 else 1)
EOF
}

VENV_BIN=$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')")
if command -v cmake >/dev/null 2>&1 && cmake_fits cmake; then
    HOROVOD_CMAKE=$(command -v cmake)
else
    echo "No CMake between 3.13 and 4 on PATH: installing $CMAKE_PIN into the venv."
    "$PYTHON" -m pip install -q "$CMAKE_PIN" || fail "could not install $CMAKE_PIN from PyPI"
    HOROVOD_CMAKE=$VENV_BIN/cmake
fi
export HOROVOD_CMAKE
echo "Building with $("$HOROVOD_CMAKE" --version | head -1)."

# --no-build-isolation builds against the TensorFlow in the venv; the build itself needs these in it.
"$PYTHON" -m pip install -q "${RUNTIME_PINS[@]}" setuptools wheel \
    || fail "could not install Horovod's build and runtime requirements (${RUNTIME_PINS[*]})"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/horovod-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m pip download -q --no-deps --no-binary :all: "horovod==$HOROVOD_VERSION" -d "$WORK" \
    || fail "could not download the horovod==$HOROVOD_VERSION source package from PyPI"
tar -xzf "$WORK/horovod-$HOROVOD_VERSION.tar.gz" -C "$WORK"
SRC=$WORK/horovod-$HOROVOD_VERSION

# The TensorFlow wheel ships no XLA headers, which xla_mpi_ops.cc includes: compile without it. Horovod then
# has no XLA custom-call ops; plain allreduce under tf.function (and outside jit_compile) is unaffected.
TF_CMAKE=$SRC/horovod/tensorflow/CMakeLists.txt
grep -q 'xla_mpi_ops.cc' "$TF_CMAKE" || fail "xla_mpi_ops.cc not found in $TF_CMAKE: unexpected Horovod source layout"
sed -i '/xla_mpi_ops\.cc/d' "$TF_CMAKE"
echo "Patched horovod/tensorflow/CMakeLists.txt: dropped xla_mpi_ops.cc (the TensorFlow wheel lacks the XLA" \
    "headers it needs)."

export HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITH_GLOO=1
unset HOROVOD_GPU_OPERATIONS HOROVOD_WITH_MPI HOROVOD_WITHOUT_MPI
if [[ "$MPI" == 1 ]]; then export HOROVOD_WITH_MPI=1; else export HOROVOD_WITHOUT_MPI=1; fi
if [[ "$NCCL" == 1 ]]; then
    # TensorFlow 2.21's stream executor no longer has stream_executor::gpu::AsGpuStreamValue, which the GPU ops
    # of mpi_ops.cc declare and call: the library would load with an undefined symbol. Define it inline from
    # the Stream's platform_specific_handle(), which TF 2.21's headers declare.
    "$PYTHON" - "$SRC/horovod/tensorflow/mpi_ops.cc" <<'EOF' || fail "mpi_ops.cc: unexpected Horovod source layout"
import sys

path = sys.argv[1]
text = open(path, encoding="utf-8").read()
declaration = ("// Forward declaration of AsGpuStreamValue\nnamespace stream_executor {\nnamespace gpu {\n"
               "GpuStreamHandle AsGpuStreamValue(Stream* stream);\n"
               "} // namespace stream_executor\n} // namespace gpu\n")
included = '#include "tensorflow/stream_executor/stream.h"\n#endif // TENSORFLOW_VERSION >= 2011000000\n'
if text.count(declaration) != 1 or text.count(included) != 1:
    sys.exit(1)
definition = ("namespace stream_executor {\nnamespace gpu {\n"
              "inline GpuStreamHandle AsGpuStreamValue(Stream* stream) {\n"
              "  return static_cast<GpuStreamHandle>(stream->platform_specific_handle().stream);\n}\n"
              "}  // namespace gpu\n}  // namespace stream_executor\n")
with open(path, "w", encoding="utf-8") as handle:
    handle.write(text.replace(declaration, "").replace(included, included + definition))
EOF
    echo "Patched horovod/tensorflow/mpi_ops.cc: AsGpuStreamValue from Stream::platform_specific_handle()" \
        "(TensorFlow 2.21)."
    # pip's NCCL has libnccl.so.2 but no libnccl.so for the linker: link through a directory that has one, and
    # find the library at run time where pip put it.
    mkdir -p "$WORK/nccl/lib"
    ln -s "$(dirname "$NCCL_LIB")/include" "$WORK/nccl/include"
    ln -s "$(ls "$NCCL_LIB"/libnccl.so* | head -n 1)" "$WORK/nccl/lib/libnccl.so"
    export HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_CUDA_HOME=$CUDA_HOME_FOUND HOROVOD_NCCL_HOME=$WORK/nccl
    export HOROVOD_NCCL_LINK=SHARED LDFLAGS="${LDFLAGS:-} -Wl,-rpath,$NCCL_LIB"
fi
export MAKEFLAGS=${MAKEFLAGS:--j$(nproc)}
if ! "$PYTHON" -m pip install --no-build-isolation --no-deps --no-cache-dir "$SRC" >"$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log" >&2
    cp "$WORK/build.log" "${TMPDIR:-/tmp}/horovod-build.log"
    fail "building Horovod failed; the last lines are above, the full log is in ${TMPDIR:-/tmp}/horovod-build.log"
fi

BUILT=$("$PYTHON" -c "import horovod.tensorflow as hvd
hvd.init()
assert hvd.size() == 1
print(int(bool(hvd.nccl_built())), int(bool(hvd.mpi_built())), int(bool(hvd.gloo_built())))") \
    || fail "Horovod built but 'import horovod.tensorflow' does not work"
[[ "$BUILT" == "$WANTED" ]] || fail "Horovod built with $(describe "$BUILT"), not $(describe "$WANTED")"
MPIRUN=""
[[ "$MPI" == 1 ]] && MPIRUN=" or 'mpirun -np N ...'"
echo "Horovod $HOROVOD_VERSION installed ($(describe "$BUILT")): launch with" \
    "'$VENV_BIN/horovodrun -np N -H host1:slots,host2:slots --gloo ...'$MPIRUN"
