"""C sources the compile-cache tests send both to the executor directly and through the whole system."""

from __future__ import annotations


def c_printing(text: str) -> str:
    return f'#include <stdio.h>\nint main(void) {{ puts("{text}"); return 0; }}\n'


# Replaces its own binary with a script, then says who it is (TAG): a run of the cached build must
# never meet what an earlier run of the same source left behind.
SELF_REWRITING_C = r"""
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
    unlink("main");
    FILE *f = fopen("main", "w");
    if (f == NULL) return 3;
    fputs("#!/bin/sh\necho poisoned\n", f);
    fclose(f);
    chmod("main", 0755);
    puts("original TAG");
    return 0;
}
"""
