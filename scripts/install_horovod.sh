#!/usr/bin/env bash
# Build Horovod 0.28.1 (the newest release, source-only) for the TensorFlow in the venv: gloo controller,
# no MPI, no PyTorch, no MXNet. NEZHA pretraining uses it with --horovod, launched by horovodrun or mpirun.
#
#   PYTHON=.venv/bin/python bash scripts/install_horovod.sh      (`make horovod` does this)
#
# Settings: PYTHON (default .venv/bin/python of the checkout, else python3), MAKEFLAGS, TMPDIR.
#
# Idempotent: exits at once when `import horovod.tensorflow` already works with this interpreter.
# Takes about 4 minutes on 2 cores. Needs a C++17 compiler, make, and CMake 3.13 to 3.x (a pinned CMake
# from PyPI is installed into the venv when the system has none that fits).
set -euo pipefail

HOROVOD_VERSION=0.28.1
# CMake 4 refuses the `cmake_minimum_required(VERSION 2.8.12)` of Horovod's bundled gloo; 3.31 accepts it.
CMAKE_PIN=cmake==3.31.6
# Horovod's own runtime requirements (setup.py install_requires), pinned so the build is repeatable.
RUNTIME_PINS=(cloudpickle==3.1.3 psutil==7.2.2 PyYAML==6.0.4 packaging==26.3)

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}

[ -x "$PYTHON" ] || command -v "$PYTHON" >/dev/null 2>&1 \
    || fail "$PYTHON: no Python interpreter here (set PYTHON, or run 'make venv' first)"

if "$PYTHON" -c "import horovod.tensorflow" >/dev/null 2>&1; then
    echo "Horovod is already installed for $("$PYTHON" -c 'import sys; print(sys.executable)'):" \
        "$("$PYTHON" -c 'import horovod; print(horovod.__version__)')"
    exit 0
fi

TF_VERSION=$("$PYTHON" -c "import tensorflow as tf; print(tf.__version__)" 2>/dev/null) \
    || fail "TensorFlow does not import with $PYTHON; install requirements.txt first ('make venv')"
for tool in make g++; do
    command -v "$tool" >/dev/null 2>&1 || fail "'$tool' not found: install a C++ toolchain (Debian: apt-get install build-essential)"
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
echo "Building Horovod $HOROVOD_VERSION for TensorFlow $TF_VERSION with $("$HOROVOD_CMAKE" --version | head -1)."

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
echo "Patched horovod/tensorflow/CMakeLists.txt: dropped xla_mpi_ops.cc (the TensorFlow wheel lacks the XLA headers it needs)."

export HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1
export HOROVOD_WITHOUT_MPI=1 HOROVOD_WITH_GLOO=1
export MAKEFLAGS=${MAKEFLAGS:--j$(nproc)}
if ! "$PYTHON" -m pip install --no-build-isolation --no-deps --no-cache-dir "$SRC" >"$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log" >&2
    cp "$WORK/build.log" "${TMPDIR:-/tmp}/horovod-build.log"
    fail "building Horovod failed; the last lines are above, the full log is in ${TMPDIR:-/tmp}/horovod-build.log"
fi

"$PYTHON" -c "import horovod.tensorflow as hvd; hvd.init(); assert hvd.size() == 1" \
    || fail "Horovod built but 'import horovod.tensorflow' does not work"
echo "Horovod $HOROVOD_VERSION installed (TensorFlow ops, gloo controller, no MPI): launch with" \
    "'$VENV_BIN/horovodrun -np N -H host:slots --gloo ...'"
