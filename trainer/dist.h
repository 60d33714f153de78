// trainer/dist.h — the data-parallel communicator: all-reduce (sum), reduce-scatter,
// all-gather, broadcast and barrier over buffers of a backend, with three implementations:
//   threads in one process (CPU backend, `quarry train --device cpu --ranks N`): each rank a
//     thread with its own backend and model replica; sums run in rank order, so the bits do not
//     depend on thread timing;
//   TCP through rank 0 (CPU backend, one process per rank: `--device cpu --gpus N` or a
//     launcher's environment): the same rank-order sums, for testing the launcher without GPUs;
//   NCCL (trainer/dist_nccl.cu, CUDA builds): non-blocking communicator, errors and the
//     --dist-timeout watchdog polled through ncclCommGetAsyncError.
// Every call returns 0, or -1 with a message in dist_error; a rank that fails calls dist_abort
// so that the others' collectives fail too instead of waiting (and a dead rank is caught by the
// timeout or, over TCP, by its closed connection).
//
// Sharding: a buffer of n elements is split into `world` contiguous shards (dist_shard):
// q = n / world elements each, the last rank also takes the remainder. Reduce-scatter leaves the
// sum of shard r in shard r of rank r (the rest of the buffer is undefined); all-gather fills
// every shard from its owner.
#pragma once
#include "../kernels/backend.h"
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dist dist;

// Where a process stands in a multi-process run, from the launchers' environment.
typedef struct {
    int rank, world, local_rank;
    char master_addr[256];
    int master_port;
    char source[32];          // "torchrun", "slurm", "openmpi" or "single"
} dist_env;

// torchrun / `quarry train --gpus` (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT),
// Slurm under srun (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; MASTER_ADDR or the first host
// of SLURM_JOB_NODELIST; MASTER_PORT or 29500), Open MPI (OMPI_COMM_WORLD_RANK, _SIZE,
// _LOCAL_RANK; MASTER_ADDR or 127.0.0.1 for one server). Under torchrun (its agent holds
// MASTER_PORT) the rendezvous uses MASTER_PORT+1; QUARRY_MASTER_PORT overrides the port.
// 0 ok (world 1 when none is set), -1 with a message naming the variable.
int dist_env_detect(dist_env *e, char *err, size_t errlen);
// First host of a Slurm node list: "node[01-04],gpu7" → "node01". 0 ok, -1 malformed.
int dist_first_host(const char *nodelist, char *out, size_t outlen);

// Threads in one process: create the group once, then each rank's thread joins with its own
// backend. timeout_s bounds every wait for the other ranks.
typedef struct dist_group dist_group;
dist_group *dist_group_create(int world, double timeout_s);
dist *dist_group_join(dist_group *g, int rank, backend *be);
void dist_group_free(dist_group *g);   // after every rank's dist_close

// One process per rank, CPU backend: TCP rendezvous at addr:port, then collectives through
// rank 0. NULL with a message naming the address on failure.
dist *dist_open_tcp(const dist_env *e, backend *be, double timeout_s, char *err, size_t errlen);
// One process per GPU: the ncclUniqueId travels over the TCP rendezvous. NULL with a message
// (also when quarry was built without CUDA).
dist *dist_open_nccl(const dist_env *e, backend *be, double timeout_s, char *err, size_t errlen);

int dist_rank(const dist *d);
int dist_world(const dist *d);
const char *dist_kind(const dist *d);   // "threads", "tcp", "nccl"
void dist_shard(size_t n, int world, int rank, size_t *off, size_t *len);

// Device buffers of the dist's backend, in place.
int dist_all_reduce(dist *d, float *buf, size_t n);
int dist_reduce_scatter(dist *d, float *buf, size_t n);
int dist_all_gather(dist *d, void *buf, size_t n, dtype dt);
int dist_broadcast(dist *d, void *buf, size_t bytes, int root);
int dist_barrier(dist *d);
// The same collectives, started so that they overlap the backward: they take the buffer as the
// backend's work queued so far leaves it and run beside the work queued next (NCCL: on the
// communicator's stream, ordered by CUDA events; threads and TCP: at once, blocking). Each
// returns a ticket ≥ 0, or -1. dist_wait(t) returns once the collective t is done (the device
// meanwhile runs the work queued before; errors and --dist-timeout are watched), so the work
// queued after it sees the result; dist_finish waits for every started collective and forgets
// the tickets.
int dist_all_reduce_start(dist *d, float *buf, size_t n);
int dist_reduce_scatter_start(dist *d, float *buf, size_t n);
int dist_wait(dist *d, int ticket);
int dist_finish(dist *d);
// Host memory: sums n doubles over the ranks (rank order); copies bytes from root.
int dist_all_reduce_host(dist *d, double *v, int n);
int dist_broadcast_host(dist *d, void *buf, size_t bytes, int root);

// Marks the group failed (the others' current and next collectives fail with `why`).
void dist_abort(dist *d, const char *why);
const char *dist_error(const dist *d);
void dist_close(dist *d);

#ifdef __cplusplus
}
#endif
