/* The sandbox's pid 1 (bwrap --as-pid-1): starts its command as its one child, reaps every process
 * orphaned in the pid namespace, writes the command's raw wait status (an int in native byte order)
 * to STATUS_FD and exits; the kernel then kills whatever is left in the namespace.
 *
 * usage: lce-init STATUS_FD COMMAND [ARG]...
 *
 * Nothing inside can reach it or speak in its name: it is not dumpable (its memory, its fds, ptrace and
 * pidfd_getfd are refused to the sandbox's uid), its children do not inherit STATUS_FD, and as the init
 * of a pid namespace without signal handlers it ignores every signal sent from inside. When it fails
 * itself it exits 125 without writing a status: the executor then knows it has none.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define FAILED 125

static int failed(const char *what) {
    perror(what);
    return FAILED;
}

static int status_fd_of(const char *arg) {
    char *end;
    long fd = strtol(arg, &end, 10);
    if (*arg == '\0' || *end != '\0' || fd <= STDERR_FILENO || fd > 1024) {
        errno = EINVAL;
        return -1;
    }
    if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) != 0) return -1;
    return (int)fd;
}

int main(int argc, char **argv) {
    /* First of all: until then the sandbox's uid may open /proc/1/mem. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return failed("lce-init: prctl(PR_SET_DUMPABLE)");
    /* The uid switch in front of it (setpriv, root-capdrop mode) cleared bwrap's --die-with-parent. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return failed("lce-init: prctl(PR_SET_PDEATHSIG)");
    if (argc < 3) {
        fputs("usage: lce-init STATUS_FD COMMAND [ARG]...\n", stderr);
        return FAILED;
    }
    int status_fd = status_fd_of(argv[1]);
    if (status_fd < 0) return failed("lce-init: STATUS_FD");

    /* A command that could not even start is the sandbox's failure, not an exit of the program. */
    int exec_failed[2];
    if (pipe2(exec_failed, O_CLOEXEC) != 0) return failed("lce-init: pipe2");
    pid_t command = fork();
    if (command < 0) return failed("lce-init: fork");
    if (command == 0) {
        execv(argv[2], &argv[2]);
        int error = errno;
        write(exec_failed[1], &error, sizeof error);
        _exit(FAILED);
    }
    close(exec_failed[1]);
    int exec_error;
    if (read(exec_failed[0], &exec_error, sizeof exec_error) == (ssize_t)sizeof exec_error) {
        errno = exec_error;
        return failed("lce-init: exec");
    }
    close(exec_failed[0]);
    for (;;) {
        int status;
        pid_t ended = wait(&status);
        if (ended == command) {
            if (write(status_fd, &status, sizeof status) != (ssize_t)sizeof status) return failed("lce-init: write");
            return 0;
        }
        if (ended < 0 && errno != EINTR) return failed("lce-init: wait");
    }
}
