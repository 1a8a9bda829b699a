"""C sources shared by tests: the compile cache's (sent to the executor directly and through the whole
system), and the sandbox's probes of how a run ends."""

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

# Ends as the file "ending" in its work dir says: "exit N", or by a real signal: "segv", "xcpu" (its own
# RLIMIT_CPU lowered to 1 s), "xfsz" (writes past RLIMIT_FSIZE), "oom" (touches memory until the kill).
ENDING_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
int main(void) {
    char how[8] = "";
    int code = 0;
    FILE *ending = fopen("ending", "r");
    if (ending == NULL || fscanf(ending, "%7s %d", how, &code) < 1) return 2;
    if (strcmp(how, "exit") == 0) exit(code);
    if (strcmp(how, "segv") == 0) return *(volatile int *)NULL;
    if (strcmp(how, "xcpu") == 0) {
        struct rlimit cpu;
        getrlimit(RLIMIT_CPU, &cpu);
        cpu.rlim_cur = 1;
        setrlimit(RLIMIT_CPU, &cpu);
        for (volatile unsigned long spin = 0;; spin++) {}
    }
    if (strcmp(how, "xfsz") == 0) {
        static char chunk[1 << 16];
        int out = open("big", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        for (;;) write(out, chunk, sizeof chunk);
    }
    if (strcmp(how, "oom") == 0) {
        for (;;) memset(malloc(1 << 20), 1, 1 << 20);
    }
    return 2;
}
"""

# Tries every way its uid might reach the sandbox's pid 1 and says what each got; every fd it gets
# from pid 1 is sent a would-be status (a wait status of exit 0, an eventfd count of 1). Then exits 3.
PID_1_PROBE_C = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
static void say(const char *what, long result) {
    printf("%s: %s\n", what, result < 0 ? strerrorname_np(errno) : "ok");
}
int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    DIR *own = opendir("/proc/self/fd");
    printf("own fds:");
    for (struct dirent *entry; (entry = readdir(own)) != NULL;) {
        if (entry->d_name[0] != '.' && atoi(entry->d_name) != dirfd(own)) printf(" %s", entry->d_name);
    }
    printf("\n");
    closedir(own);
    say("open /proc/1/mem for writing", open("/proc/1/mem", O_RDWR));
    say("open /proc/1/mem for reading", open("/proc/1/mem", O_RDONLY));
    say("list /proc/1/fd", opendir("/proc/1/fd") == NULL ? -1 : 0);
    int pidfd = syscall(SYS_pidfd_open, 1, 0);
    int refused = 0;
    for (int fd = 0; fd < 64; fd++) {
        int taken = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
        if (taken < 0) {
            refused += errno == EPERM;
            continue;
        }
        printf("pidfd_getfd %d: ok\n", fd);
        int exited_0 = 0;
        uint64_t one = 1;
        write(taken, &exited_0, sizeof exited_0);
        write(taken, &one, sizeof one);
    }
    printf("pidfd_getfd refused: %d\n", refused);
    struct rlimit none = {0, 0};
    say("prlimit pid 1", prlimit(1, RLIMIT_CPU, &none, NULL));
    say("prlimit pid 1 in the low 32 bits", syscall(SYS_prlimit64, 0x100000001L, RLIMIT_CPU, &none, NULL));
    say("kill pid 1", kill(1, SIGKILL));
    usleep(200 * 1000);
    printf("still here\n");
    return 3;
}
"""
