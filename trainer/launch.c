// trainer/launch.c — see launch.h.
#include "launch.h"
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t forwarded_signal = 0;
static void on_signal(int sig) { forwarded_signal = sig; }

// A port the kernel says is free now (rank 0 binds it a moment later).
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static int exit_code(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 1;
}

int launch_workers(int n, char **argv, double grace_s) {
    char port[16];
    const char *given = getenv("MASTER_PORT");
    if (given) snprintf(port, sizeof port, "%s", given);
    else {
        int p = free_port();
        if (p < 0) { fprintf(stderr, "quarry train: error: no free TCP port on 127.0.0.1 for the workers; set MASTER_PORT\n"); return 1; }
        snprintf(port, sizeof port, "%d", p);
    }
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    int *done = calloc((size_t)n, sizeof *done);
    if (!pids || !done) { free(pids); free(done); fprintf(stderr, "quarry train: error: out of memory\n"); return 1; }
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    fflush(NULL);
    int started = 0, result = 0, failed_rank = -1;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "quarry train: error: cannot start worker %d: %s\n", i, strerror(errno));
            result = 1;
            break;
        }
        if (pid == 0) {
            char v[16];
            snprintf(v, sizeof v, "%d", i);
            setenv("RANK", v, 1);
            setenv("LOCAL_RANK", v, 1);
            snprintf(v, sizeof v, "%d", n);
            setenv("WORLD_SIZE", v, 1);
            setenv("LOCAL_WORLD_SIZE", v, 1);
            setenv("MASTER_ADDR", "127.0.0.1", 1);
            setenv("MASTER_PORT", port, 1);
            signal(SIGINT, SIG_DFL);
            signal(SIGTERM, SIG_DFL);
            execv("/proc/self/exe", argv);
            fprintf(stderr, "quarry train: error: worker %d: cannot run /proc/self/exe: %s\n", i, strerror(errno));
            _exit(127);
        }
        pids[i] = pid;
        started++;
    }
    int running = started, sent_term = 0, sent_kill = 0, interrupted = 0;
    double stop_at = 0;
    if (result) { for (int i = 0; i < started; i++) kill(pids[i], SIGTERM); sent_term = 1; stop_at = now_s(); }
    while (running > 0) {
        if (forwarded_signal) {
            int sig = forwarded_signal;
            forwarded_signal = 0;
            interrupted = 1;
            for (int i = 0; i < started; i++)
                if (!done[i]) kill(pids[i], sig);
        }
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            for (int i = 0; i < started; i++) {
                if (pids[i] != pid) continue;
                done[i] = 1;
                running--;
                int code = exit_code(status);
                if (code != 0 && result == 0 && !(interrupted && code == 130)) {
                    result = code;
                    failed_rank = i;
                    if (WIFSIGNALED(status))
                        fprintf(stderr, "quarry train: error: rank %d was killed by signal %d; stopping the other ranks\n", i,
                                WTERMSIG(status));
                    else
                        fprintf(stderr, "quarry train: error: rank %d failed (exit code %d, its message is above); stopping "
                                "the other ranks\n", i, code);
                }
            }
            continue;
        }
        if (pid < 0 && errno != EINTR) break;
        if (result && !sent_term) {
            // The others would notice the dead rank by themselves (closed connection, NCCL error or
            // the --dist-timeout watchdog); asking them to stop is faster.
            for (int i = 0; i < started; i++)
                if (!done[i]) kill(pids[i], SIGTERM);
            sent_term = 1;
            stop_at = now_s();
        }
        if (sent_term && !sent_kill && now_s() - stop_at > grace_s) {
            for (int i = 0; i < started; i++)
                if (!done[i]) kill(pids[i], SIGKILL);
            sent_kill = 1;
        }
        sleep_ms(20);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    free(pids);
    free(done);
    (void)failed_rank;
    if (result) return result;
    return interrupted ? 130 : 0;
}
