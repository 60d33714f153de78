// trainer/launch.c — see launch.h.
#include "launch.h"
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
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

// A worker's stderr passes through the launcher line by line (no lines cut into each other); the
// last error line is kept to name the failure at the end.
typedef struct {
    int fd;                   // read end, -1 when closed
    char line[2048];
    size_t len;
    char last_error[1024];
} worker_err;

static void emit_line(worker_err *w) {
    w->line[w->len] = 0;
    fprintf(stderr, "%s\n", w->line);
    const char *e = strstr(w->line, "error: ");
    if (e) snprintf(w->last_error, sizeof w->last_error, "%s", e + 7);
    w->len = 0;
}

static void pump(worker_err *w) {
    char buf[4096];
    for (;;) {
        ssize_t n = read(w->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                if (w->len) emit_line(w);
                close(w->fd);
                w->fd = -1;
            }
            return;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n' || w->len + 1 >= sizeof w->line) emit_line(w);
            if (buf[i] != '\n') w->line[w->len++] = buf[i];
        }
    }
}

static void pump_all(worker_err *w, int n, int timeout_ms) {
    struct pollfd p[256];
    int k = 0, idx[256];
    for (int i = 0; i < n && k < 256; i++)
        if (w[i].fd >= 0) { p[k].fd = w[i].fd; p[k].events = POLLIN; p[k].revents = 0; idx[k++] = i; }
    if (!k) { sleep_ms(timeout_ms); return; }
    if (poll(p, (nfds_t)k, timeout_ms) <= 0) return;
    for (int j = 0; j < k; j++)
        if (p[j].revents) pump(&w[idx[j]]);
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
    if (n > 256) { fprintf(stderr, "quarry train: error: --gpus %d: at most 256 workers per server\n", n); return 2; }
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    int *done = calloc((size_t)n, sizeof *done);
    int *statuses = calloc((size_t)n, sizeof *statuses);   // wait status of each rank that exited
    int *outside = calloc((size_t)n, sizeof *outside);     // killed by a signal the launcher did not send
    worker_err *werr = calloc((size_t)n, sizeof *werr);
    if (!pids || !done || !werr) {
        free(pids);
        free(done);
        free(statuses);
        free(outside);
        free(werr);
        fprintf(stderr, "quarry train: error: out of memory\n");
        return 1;
    }
    for (int i = 0; i < n; i++) werr[i].fd = -1;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    fflush(NULL);
    int started = 0, result = 0, failed_rank = -1;
    for (int i = 0; i < n; i++) {
        int pfd[2];
        if (pipe(pfd) != 0) {
            fprintf(stderr, "quarry train: error: cannot start worker %d: %s\n", i, strerror(errno));
            result = 1;
            break;
        }
        pid_t pid = fork();
        if (pid < 0) {
            close(pfd[0]);
            close(pfd[1]);
            fprintf(stderr, "quarry train: error: cannot start worker %d: %s\n", i, strerror(errno));
            result = 1;
            break;
        }
        if (pid == 0) {
            close(pfd[0]);
            if (dup2(pfd[1], STDERR_FILENO) < 0) _exit(127);
            close(pfd[1]);
            for (int j = 0; j < i; j++)
                if (werr[j].fd >= 0) close(werr[j].fd);
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
        close(pfd[1]);
        fcntl(pfd[0], F_SETFL, fcntl(pfd[0], F_GETFL) | O_NONBLOCK);
        werr[i].fd = pfd[0];
        pids[i] = pid;
        started++;
    }
    int running = started, sent_term = 0, sent_kill = 0, interrupted = 0, failed_status = 0;
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
                if (statuses) statuses[i] = status;
                // Killed by a signal the launcher did not send (SIGTERM to stop the others, SIGKILL
                // after the grace period, a forwarded ^C): a cause, not a casualty (the OOM killer,
                // kill -9 from outside).
                if (outside && WIFSIGNALED(status)) {
                    int sig = WTERMSIG(status);
                    outside[i] = !interrupted && !(sent_term && sig == SIGTERM) && !(sent_kill && sig == SIGKILL);
                }
                int code = exit_code(status);
                if (code != 0 && result == 0 && !(interrupted && code == 130)) {
                    result = code;
                    failed_rank = i;
                    failed_status = status;
                    if (WIFSIGNALED(status))
                        fprintf(stderr, "quarry train: error: rank %d was killed by signal %d; stopping the other ranks\n", i,
                                WTERMSIG(status));
                    else
                        fprintf(stderr, "quarry train: error: rank %d failed (exit code %d); stopping the other ranks\n", i,
                                code);
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
        pump_all(werr, started, 20);
    }
    for (int i = 0; i < started; i++)
        while (werr[i].fd >= 0) pump_all(&werr[i], 1, 100);   // what the workers wrote last
    if (failed_rank >= 0 && statuses && strstr(werr[failed_rank].last_error, "see its message")) {
        // The first rank to exit may only report the peer it lost; name the rank that failed by itself.
        for (int i = 0; i < started; i++) {
            int code = done[i] ? exit_code(statuses[i]) : 0;
            // A rank that said why it stopped, or one killed from outside (it says nothing); waitpid
            // may reap its peer first when both exit at once.
            int by_itself = werr[i].last_error[0] && !strstr(werr[i].last_error, "see its message");
            if (i != failed_rank && code != 0 && code != 130 && (by_itself || (outside && outside[i]))) {
                failed_rank = i;
                failed_status = statuses[i];
                break;
            }
        }
    }
    if (failed_rank >= 0) {
        // The failing rank's own words, last, where the user looks.
        if (werr[failed_rank].last_error[0]) {
            // The worker's words already begin "rank N: "; the launcher names the rank once.
            const char *words = werr[failed_rank].last_error;
            char prefix[32];
            int np = snprintf(prefix, sizeof prefix, "rank %d: ", failed_rank);
            if (np > 0 && strncmp(words, prefix, (size_t)np) == 0) words += np;
            fprintf(stderr, "quarry train: error: the run failed on rank %d: %s\n", failed_rank, words);
        } else if (WIFSIGNALED(failed_status))
            fprintf(stderr, "quarry train: error: the run failed: rank %d was killed by signal %d (out of memory? see dmesg)\n",
                    failed_rank, WTERMSIG(failed_status));
        else
            fprintf(stderr, "quarry train: error: the run failed on rank %d (exit code %d)\n", failed_rank,
                    exit_code(failed_status));
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    for (int i = 0; i < started; i++)
        if (werr[i].fd >= 0) close(werr[i].fd);
    free(pids);
    free(done);
    free(statuses);
    free(outside);
    free(werr);
    if (result) return result;
    return interrupted ? 130 : 0;
}
