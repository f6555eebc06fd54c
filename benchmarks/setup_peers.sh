#!/usr/bin/env bash
# Install the peer implementations that benchmarks/compare.py measures against, each in its own
# virtualenv under benchmarks/.venv-peers/<name>/ (git-ignored). A virtualenv that finished
# installing holds a file `.ok` and is skipped next time; a peer that cannot be installed leaves
# `.venv-peers/<name>.error` with the reason, which the harness reports as "not installable".
#
#   benchmarks/setup_peers.sh                 # all peers, one after another
#   benchmarks/setup_peers.sh torch_sparse    # only some (names below)
#   nohup benchmarks/setup_peers.sh > benchmarks/.venv-peers/setup.log 2>&1 &
#
# Peers: torch_sparse (torch-sparse 0.6.18 with torch-scatter 2.1.2, which it imports: both
#        compile from source, ~30 + 15 min on 2 cores; wheels kept in .venv-peers/wheels/),
#        kpnn2 (0.3.0), pypi_sparselinear (sparselinear 0.0.5: clashes with our import name and
#        needs torch-sparse, from the cached wheels), sparseprop (0.1.14, a small C++ extension).
# torch==2.13.0 is installed first in every virtualenv and pinned by a constraint file, so pip
# never replaces it with a CUDA build. Override with PEERS_TORCH (e.g. "torch==2.13.0+cpu").
set -uo pipefail
cd "$(dirname "$0")"
ROOT=.venv-peers
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${PEERS_TORCH:-torch==2.13.0}
TORCH_SPARSE_SPEC="torch-sparse==0.6.18"
# torch-sparse imports torch_scatter without declaring it: build that too.
TORCH_SCATTER_SPEC="torch-scatter==2.1.2"
export MAX_JOBS=${MAX_JOBS:-2}
# torch-sparse's setup.py: CPU only, no METIS.
export FORCE_ONLY_CPU=1 WITH_METIS=0
mkdir -p "$ROOT/wheels"
WHEELS="$PWD/$ROOT/wheels"
CONSTRAINTS="$PWD/$ROOT/constraints.txt"
echo "$TORCH_SPEC" > "$CONSTRAINTS"

declare -A SPEC=(
    [torch_sparse]="$TORCH_SPARSE_SPEC"
    [kpnn2]="kpnn2==0.3.0"
    [pypi_sparselinear]="sparselinear==0.0.5"
    [sparseprop]="sparseprop==0.1.14"
)
declare -A IMPORT=(  # checked after installation
    [torch_sparse]="torch_sparse"
    [kpnn2]="kpnn2"
    [pypi_sparselinear]="sparselinear"
    [sparseprop]="sparseprop"
)
ORDER=(kpnn2 sparseprop torch_sparse pypi_sparselinear)

fail() {  # name, step, log file
    local name=$1 step=$2 log=$3
    {
        echo "$step failed: $(grep -E -m3 -i 'error|not found|no matching' "$log" \
            | tr '\n' ' ' | cut -c1-600)"
        echo "--- last lines of $log ---"
        tail -n 25 "$log"
    } > "$ROOT/$name.error"
    echo "[$name] $step FAILED; reason in $ROOT/$name.error"
    return 1
}

build_wheel() {  # pip command..., spec: build a wheel once (the slow part) into $WHEELS
    local spec=${*: -1} pip=("${@:1:$#-1}")
    local stem=${spec%%==*}; stem=${stem//-/_}; local version=${spec##*==}
    if ls "$WHEELS/$stem-$version"-*.whl >/dev/null 2>&1; then
        echo "    wheel already built: $(ls "$WHEELS/$stem-$version"-*.whl)"
        return 0
    fi
    echo "    compiling $spec (MAX_JOBS=$MAX_JOBS; torch-sparse takes ~30 min on 2 cores)"
    "${pip[@]}" wheel -v --no-deps --no-build-isolation -w "$WHEELS" "$spec"
}

install_peer() {
    local name=$1 spec=${SPEC[$1]} mod=${IMPORT[$1]}
    local venv="$ROOT/$name" log="$ROOT/$name.log"
    if [ -f "$venv/.ok" ]; then
        echo "[$name] already installed ($venv), skipping"
        return 0
    fi
    rm -f "$ROOT/$name.error"
    : > "$log"
    echo "[$name] creating $venv (log: $log)"
    if [ ! -x "$venv/bin/python" ]; then
        "$PYTHON" -m venv "$venv" >> "$log" 2>&1 || { fail "$name" "venv" "$log"; return 1; }
    fi
    local PIP=("$PWD/$venv/bin/python" -m pip --disable-pip-version-check)
    # Some setup.py files call `pip` and `python3` from PATH: make those the virtualenv's.
    local PATH="$PWD/$venv/bin:$PATH"
    echo "[$name] installing $TORCH_SPEC, numpy, scipy"
    "${PIP[@]}" install -c "$CONSTRAINTS" "$TORCH_SPEC" numpy scipy setuptools wheel pybind11 \
        >> "$log" 2>&1 || { fail "$name" "pip install torch" "$log"; return 1; }
    echo "[$name] checking that $spec exists on the registry"
    local dl; dl=$(mktemp -d)
    "${PIP[@]}" download --no-deps --no-build-isolation -d "$dl" "$spec" \
        >> "$log" 2>&1 || { rm -rf "$dl"; fail "$name" "pip download $spec" "$log"; return 1; }
    rm -rf "$dl"
    if [ "$name" = torch_sparse ] || [ "$name" = pypi_sparselinear ]; then
        for dep in "$TORCH_SPARSE_SPEC" "$TORCH_SCATTER_SPEC"; do
            echo "[$name] building the $dep wheel (cached in $ROOT/wheels)"
            build_wheel "${PIP[@]}" "$dep" >> "$log" 2>&1 \
                || { fail "$name" "building the $dep wheel" "$log"; return 1; }
        done
    fi
    echo "[$name] installing $spec"
    local extra=()
    [ "$name" = torch_sparse ] || [ "$name" = pypi_sparselinear ] \
        && extra=("$TORCH_SPARSE_SPEC" "$TORCH_SCATTER_SPEC")
    "${PIP[@]}" install -v --no-build-isolation -c "$CONSTRAINTS" --find-links "$WHEELS" \
        "$spec" "${extra[@]}" >> "$log" 2>&1 || { fail "$name" "pip install $spec" "$log"; return 1; }
    "$venv/bin/python" -c "import torch, $mod; print('$mod', getattr($mod, '__version__', '?'), \
'torch', torch.__version__)" >> "$log" 2>&1 || { fail "$name" "import $mod" "$log"; return 1; }
    "${PIP[@]}" freeze > "$venv/.ok"
    echo "[$name] OK"
}

names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${ORDER[@]}")
for n in "${names[@]}"; do
    if [ -z "${SPEC[$n]+x}" ]; then
        echo "unknown peer '$n'; choose from: ${ORDER[*]}" >&2
        exit 2
    fi
done
status=0
for n in "${names[@]}"; do
    install_peer "$n" || status=1
done
exit $status
