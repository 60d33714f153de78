// trainer/run_lock.c — see run_lock.h.
#include "run_lock.h"
#include "../data/fileio.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int run_lock_acquire(const char *run_dir, char *err, size_t errlen) {
    char path[4200];
    if (fileio_mkdir_p(run_dir, err, errlen)) return -1;
    snprintf(path, sizeof path, "%s/%s", run_dir, RUN_LOCK_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) { snprintf(err, errlen, "%s: cannot open the run's lock: %s", path, strerror(errno)); return -1; }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = e == EWOULDBLOCK ? pread(fd, pid, sizeof pid - 1, 0) : -1;
        close(fd);
        if (e != EWOULDBLOCK) { snprintf(err, errlen, "%s: cannot lock: %s", path, strerror(e)); return -1; }
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        snprintf(err, errlen, "%s is in use by another `quarry train` (process %s)\nhint: wait for it to finish, or stop "
                 "it (SIGINT saves a checkpoint) and then --resume %s", run_dir, pid[0] ? pid : "unknown", run_dir);
        return -1;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

void run_lock_release(int fd) {
    if (fd >= 0) close(fd);   // closing the last descriptor drops the flock
}

int run_lock_dir_is_fresh(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT;
    struct dirent *e;
    int fresh = 1;
    while (fresh && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, RUN_LOCK_FILE)) fresh = 0;
    closedir(d);
    return fresh;
}
