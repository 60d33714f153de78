// trainer/run_lock.h — one `quarry train` per run directory: an advisory lock (flock) on
// RUN/.lock, a file that holds the PID of its holder. The lock belongs to the open file, so it
// dies with its process: kill -9 leaves the file behind but never a lock that blocks a resume.
#pragma once
#include <stddef.h>

#define RUN_LOCK_FILE ".lock"

// Creates run_dir if needed and takes its lock. The descriptor (O_CLOEXEC: started workers do
// not inherit it), or -1 with a message naming the PID that holds it.
int run_lock_acquire(const char *run_dir, char *err, size_t errlen);
// Drops the lock (the file stays: removing it would race with the next holder). -1 is ignored.
void run_lock_release(int fd);
// 1 when dir is absent, empty, or holds nothing but the lock file (a new run may start there).
int run_lock_dir_is_fresh(const char *dir);
