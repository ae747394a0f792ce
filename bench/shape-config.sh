#!/usr/bin/env bash
# bench/shape-config.sh NAME — prints the config.json of bench shape NAME (bench/shapes.h: tiny,
# small, qwen0.5b), for benchmarks that run the tools on random weights of that shape (init-model
# --config). Builds its little program into build/bench/ on first use (after `make`).
set -euo pipefail
cd "$(dirname "$0")/.."
prog=build/bench/shape-config
if [ ! -x "$prog" ] || [ bench/shapes.h -nt "$prog" ] || [ bench/shape-config.sh -nt "$prog" ]; then
    mkdir -p build/bench
    cc -O2 -D_GNU_SOURCE -Icommon -Ibench -o "$prog" -x c - -x none build/libcommon.a \
        $(make -s --no-print-directory --eval 'print-ldlibs: ; @echo $(LDLIBS)' print-ldlibs) <<'EOF'
#include <stdio.h>
#include <string.h>
#include "shapes.h"
int main(int argc, char **argv)
{
    for (size_t i = 0; argc > 1 && i < sizeof SHAPES / sizeof SHAPES[0]; i++)
        if (!strcmp(SHAPES[i].name, argv[1])) { puts(SHAPES[i].json); return 0; }
    fprintf(stderr, "shape-config: no shape \"%s\" in bench/shapes.h\n", argc > 1 ? argv[1] : "");
    return 64;
}
EOF
fi
exec "$prog" "$@"
