// trainer/launch.h — `quarry train --gpus N` on one server: starts N worker processes of this
// same binary (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free
// MASTER_PORT in their environment), forwards SIGINT/SIGTERM to them, and when one fails stops
// the others (SIGTERM, then SIGKILL after a grace period), so a run never hangs on a dead rank.
#pragma once

// argv: the full command line to run in each worker (argv[0] is ignored: /proc/self/exe runs).
// Returns the exit code of the run: 0 when every worker succeeded, 130 when interrupted, else
// the first failing worker's code (a message names the rank).
int launch_workers(int n, char **argv, double grace_s);
