// trainer/dist.c — see dist.h: the common wrappers, launcher environments, and the thread and
// TCP implementations (the NCCL one is trainer/dist_nccl.cu).
#include "dist_impl.h"
#include "rendezvous.h"
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void dist_shard(size_t n, int world, int rank, size_t *off, size_t *len) {
    size_t q = n / (size_t)world;
    *off = q * (size_t)rank;
    *len = rank == world - 1 ? n - *off : q;
}

void *dist_host_scratch(dist *d, size_t bytes) {
    if (bytes > d->host_scratch_bytes) {
        void *p = realloc(d->host_scratch, bytes);
        if (!p) return NULL;
        d->host_scratch = p;
        d->host_scratch_bytes = bytes;
    }
    return d->host_scratch;
}

int dist_rank(const dist *d) { return d ? d->rank : 0; }
int dist_world(const dist *d) { return d ? d->world : 1; }
const char *dist_kind(const dist *d) { return d ? d->ops->kind : "single"; }
const char *dist_error(const dist *d) { return d->error; }

int dist_all_reduce(dist *d, float *buf, size_t n) { return !d ? 0 : d->ops->all_reduce(d, buf, n); }
int dist_reduce_scatter(dist *d, float *buf, size_t n) { return !d ? 0 : d->ops->reduce_scatter(d, buf, n); }
int dist_all_gather(dist *d, void *buf, size_t n, dtype dt) {
    return !d ? 0 : d->ops->all_gather(d, buf, n, dtype_size(dt));
}
int dist_broadcast(dist *d, void *buf, size_t bytes, int root) { return !d ? 0 : d->ops->broadcast(d, buf, bytes, root); }
int dist_barrier(dist *d) { return !d ? 0 : d->ops->barrier(d); }
int dist_all_reduce_start(dist *d, float *buf, size_t n) {
    if (!d) return 0;
    if (d->ops->all_reduce_start) return d->ops->all_reduce_start(d, buf, n);
    return d->ops->all_reduce(d, buf, n);
}
int dist_reduce_scatter_start(dist *d, float *buf, size_t n) {
    if (!d) return 0;
    if (d->ops->reduce_scatter_start) return d->ops->reduce_scatter_start(d, buf, n);
    return d->ops->reduce_scatter(d, buf, n);
}
int dist_wait(dist *d, int ticket) { return d && d->ops->wait ? d->ops->wait(d, ticket) : 0; }
int dist_finish(dist *d) { return d && d->ops->finish ? d->ops->finish(d) : 0; }
int dist_all_reduce_host(dist *d, double *v, int n) { return !d ? 0 : d->ops->all_reduce_host(d, v, n); }
int dist_broadcast_host(dist *d, void *buf, size_t bytes, int root) {
    return !d ? 0 : d->ops->broadcast_host(d, buf, bytes, root);
}
void dist_abort(dist *d, const char *why) {
    if (d && d->world > 1) d->ops->abort(d, why);
}
void dist_close(dist *d) {
    if (!d) return;
    void *scratch = d->host_scratch;   // the worker of the thread ranks may use it until close
    d->ops->close(d);
    free(scratch);
}

// ---- launcher environments

static int env_int(const char *name, int *out, int lo, char *err, size_t errlen) {
    const char *v = getenv(name);
    if (!v) return 1;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > 1000000) {
        snprintf(err, errlen, "environment variable %s=\"%s\" is not a whole number ≥ %d", name, v, lo);
        return -1;
    }
    *out = (int)x;
    return 0;
}

int dist_first_host(const char *list, char *out, size_t outlen) {
    // The first entry ends at a comma outside brackets; each bracket gives its first number:
    // "rack[3,5-6]-n[02-04]" → "rack3-n02".
    size_t i = 0, o = 0;
    while (list[i] && list[i] != ',') {
        if (list[i] == '[') {
            size_t start = ++i;
            while (list[i] >= '0' && list[i] <= '9') {
                if (o + 1 >= outlen) return -1;
                out[o++] = list[i++];
            }
            if (i == start || (list[i] != ',' && list[i] != '-' && list[i] != ']')) return -1;
            while (list[i] && list[i] != ']') i++;
            if (list[i] != ']') return -1;
            i++;
        } else {
            if (o + 1 >= outlen) return -1;
            out[o++] = list[i++];
        }
    }
    out[o] = 0;
    return o ? 0 : -1;
}

int dist_env_detect(dist_env *e, char *err, size_t errlen) {
    memset(e, 0, sizeof *e);
    e->world = 1;
    e->master_port = 29500;
    snprintf(e->source, sizeof e->source, "single");
    int rc;
    const char *addr = getenv("MASTER_ADDR");
    if (getenv("WORLD_SIZE")) {
        snprintf(e->source, sizeof e->source, "torchrun");
        if (env_int("WORLD_SIZE", &e->world, 1, err, errlen) < 0) return -1;
        if ((rc = env_int("RANK", &e->rank, 0, err, errlen)) != 0) {
            if (rc > 0) snprintf(err, errlen, "WORLD_SIZE is set but RANK is not; a launcher sets both");
            return -1;
        }
        if (env_int("LOCAL_RANK", &e->local_rank, 0, err, errlen) < 0) return -1;
        if (e->world > 1 && !addr) {
            snprintf(err, errlen, "WORLD_SIZE=%d but MASTER_ADDR is not set; set it to rank 0's host", e->world);
            return -1;
        }
    } else if (getenv("SLURM_PROCID") && getenv("SLURM_STEP_ID") && getenv("SLURM_NTASKS")) {
        // Only inside an srun step: a batch script itself also sees SLURM_NTASKS.
        snprintf(e->source, sizeof e->source, "slurm");
        if (env_int("SLURM_NTASKS", &e->world, 1, err, errlen) < 0 || env_int("SLURM_PROCID", &e->rank, 0, err, errlen) < 0 ||
            env_int("SLURM_LOCALID", &e->local_rank, 0, err, errlen) < 0)
            return -1;
        if (!addr) {
            const char *nodes = getenv("SLURM_STEP_NODELIST");
            if (!nodes) nodes = getenv("SLURM_JOB_NODELIST");
            if (!nodes || dist_first_host(nodes, e->master_addr, sizeof e->master_addr)) {
                snprintf(err, errlen, "cannot find rank 0's host in SLURM_JOB_NODELIST=\"%s\"; set MASTER_ADDR",
                         nodes ? nodes : "");
                return -1;
            }
        }
    } else if (getenv("OMPI_COMM_WORLD_SIZE")) {
        snprintf(e->source, sizeof e->source, "openmpi");
        if (env_int("OMPI_COMM_WORLD_SIZE", &e->world, 1, err, errlen) < 0 ||
            env_int("OMPI_COMM_WORLD_RANK", &e->rank, 0, err, errlen) < 0 ||
            env_int("OMPI_COMM_WORLD_LOCAL_RANK", &e->local_rank, 0, err, errlen) < 0)
            return -1;
        if (!addr) snprintf(e->master_addr, sizeof e->master_addr, "127.0.0.1");
    }
    if (addr) snprintf(e->master_addr, sizeof e->master_addr, "%s", addr);
    if (env_int("MASTER_PORT", &e->master_port, 1, err, errlen) < 0) return -1;
    // torchrun's agent on the first node already listens at MASTER_PORT (its own store): take
    // the next port. QUARRY_MASTER_PORT overrides both.
    const char *agent = getenv("TORCHELASTIC_USE_AGENT_STORE");
    if (agent && !strcmp(agent, "True")) e->master_port++;
    if (env_int("QUARRY_MASTER_PORT", &e->master_port, 1, err, errlen) < 0) return -1;
    if (e->master_port > 65535) { snprintf(err, errlen, "MASTER_PORT=%d is not a TCP port", e->master_port); return -1; }
    if (e->rank >= e->world) {
        snprintf(err, errlen, "rank %d is not below the world size %d (%s environment)", e->rank, e->world, e->source);
        return -1;
    }
    return 0;
}

// ---- threads in one process

#define MAX_THREAD_RANKS 256

struct dist_group {
    int world;
    double timeout_s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int arrived, aborted;
    unsigned long generation;
    char why[400];
    void *posted[MAX_THREAD_RANKS];
};

// Started collectives run on a worker thread per rank, in the order started, so that the
// backward goes on meanwhile as it does beside NCCL's stream: the same rank-order sums, the same
// bits. Blocking collectives first wait for the worker's queue (every rank then meets the
// group's barriers in the same order).
enum { T_JOBS = 1024 };
typedef struct { int all_reduce; float *buf; size_t n; } t_job;

typedef struct {
    dist_group *g;
    pthread_t worker;
    int worker_started, stop, failed;
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    t_job jobs[T_JOBS];
    int queued, done;         // tickets handed out and finished since the last dist_finish
} thread_impl;

dist_group *dist_group_create(int world, double timeout_s) {
    if (world < 1 || world > MAX_THREAD_RANKS) return NULL;
    dist_group *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->world = world;
    g->timeout_s = timeout_s;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    return g;
}

void dist_group_free(dist_group *g) {
    if (!g) return;
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}

static int t_fail(dist *d, dist_group *g) {
    snprintf(d->error, sizeof d->error, "%s", g->why);
    return -1;
}

// Every rank arrives, or the wait fails (another rank aborted, or the timeout passed).
static int t_barrier(dist *d) {
    dist_group *g = ((thread_impl *)d->impl)->g;
    pthread_mutex_lock(&g->mu);
    if (g->aborted) { pthread_mutex_unlock(&g->mu); return t_fail(d, g); }
    unsigned long gen = g->generation;
    if (++g->arrived == g->world) {
        g->arrived = 0;
        g->generation++;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
        return 0;
    }
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    double s = dl.tv_sec + dl.tv_nsec * 1e-9 + g->timeout_s;
    dl.tv_sec = (time_t)s;
    dl.tv_nsec = (long)((s - (double)dl.tv_sec) * 1e9);
    while (gen == g->generation && !g->aborted) {
        int rc = pthread_cond_timedwait(&g->cv, &g->mu, &dl);
        if (rc == ETIMEDOUT && gen == g->generation && !g->aborted) {
            g->aborted = 1;
            snprintf(g->why, sizeof g->why, "rank %d waited %.0f s for the other ranks (--dist-timeout): a rank is stuck "
                     "or dead", d->rank, g->timeout_s);
            pthread_cond_broadcast(&g->cv);
        }
    }
    int failed = gen == g->generation;
    pthread_mutex_unlock(&g->mu);
    return failed ? t_fail(d, g) : 0;
}


static void **t_posted(dist *d) { return ((thread_impl *)d->impl)->g->posted; }

// Sums shard `rank` of every rank's buffer in rank order into this rank's buffer.
static int t_reduce_own_shard(dist *d, float *buf, size_t n) {
    size_t off, len;
    dist_shard(n, d->world, d->rank, &off, &len);
    float *tmp = dist_host_scratch(d, (len ? len : 1) * sizeof(float));
    if (!tmp) { snprintf(d->error, sizeof d->error, "out of memory in reduce-scatter"); dist_abort(d, d->error); return -1; }
    void **posted = t_posted(d);
    posted[d->rank] = buf;
    if (t_barrier(d)) return -1;
    const float *b0 = posted[0];
    for (size_t i = 0; i < len; i++) tmp[i] = b0[off + i];
    for (int r = 1; r < d->world; r++) {
        const float *br = (const float *)posted[r] + off;
        for (size_t i = 0; i < len; i++) tmp[i] += br[i];
    }
    if (t_barrier(d)) return -1;   // every rank has read the inputs
    memcpy(buf + off, tmp, len * sizeof(float));
    return 0;
}

static int t_gather_shards(dist *d, void *buf, size_t n, size_t es) {
    void **posted = t_posted(d);
    posted[d->rank] = buf;
    if (t_barrier(d)) return -1;
    for (int r = 0; r < d->world; r++) {
        if (r == d->rank) continue;
        size_t off, len;
        dist_shard(n, d->world, r, &off, &len);
        memcpy((char *)buf + off * es, (const char *)posted[r] + off * es, len * es);
    }
    return t_barrier(d);   // nobody changes its buffer while others read it
}

static int t_run_reduce_scatter(dist *d, float *buf, size_t n) {
    if (t_reduce_own_shard(d, buf, n)) return -1;
    return t_barrier(d);
}
static int t_run_all_reduce(dist *d, float *buf, size_t n) {
    if (t_reduce_own_shard(d, buf, n) || t_barrier(d)) return -1;
    return t_gather_shards(d, buf, n, sizeof(float));
}

static void *t_worker(void *arg) {
    dist *d = arg;
    thread_impl *t = d->impl;
    pthread_mutex_lock(&t->qmu);
    for (;;) {
        while (t->done == t->queued && !t->stop) pthread_cond_wait(&t->qcv, &t->qmu);
        if (t->done == t->queued) break;   // stopping, nothing left
        t_job j = t->jobs[t->done];
        pthread_mutex_unlock(&t->qmu);
        int rc = j.all_reduce ? t_run_all_reduce(d, j.buf, j.n) : t_run_reduce_scatter(d, j.buf, j.n);
        pthread_mutex_lock(&t->qmu);
        if (rc) t->failed = 1;
        t->done++;
        pthread_cond_broadcast(&t->qcv);
    }
    pthread_mutex_unlock(&t->qmu);
    return NULL;
}

static int t_start(dist *d, int all_reduce, float *buf, size_t n) {
    thread_impl *t = d->impl;
    pthread_mutex_lock(&t->qmu);
    if (!t->worker_started) {
        if (pthread_create(&t->worker, NULL, t_worker, d)) {
            pthread_mutex_unlock(&t->qmu);
            snprintf(d->error, sizeof d->error, "rank %d: cannot start the communication thread", d->rank);
            dist_abort(d, d->error);
            return -1;
        }
        t->worker_started = 1;
    }
    if (t->queued == T_JOBS) {   // jobs are indexed by ticket: start over once all have run
        while (t->done < t->queued) pthread_cond_wait(&t->qcv, &t->qmu);
        t->queued = t->done = 0;
    }
    int ticket = t->queued;
    t->jobs[ticket] = (t_job){all_reduce, buf, n};
    t->queued++;
    pthread_cond_broadcast(&t->qcv);
    pthread_mutex_unlock(&t->qmu);
    return ticket;
}
static int t_all_reduce_start(dist *d, float *buf, size_t n) { return t_start(d, 1, buf, n); }
static int t_reduce_scatter_start(dist *d, float *buf, size_t n) { return t_start(d, 0, buf, n); }

static int t_wait(dist *d, int ticket) {
    thread_impl *t = d->impl;
    pthread_mutex_lock(&t->qmu);
    while (t->done <= ticket && !t->failed) pthread_cond_wait(&t->qcv, &t->qmu);
    int rc = t->failed ? -1 : 0;
    pthread_mutex_unlock(&t->qmu);
    return rc;
}

// Waits for the whole queue (also after a failure: the worker must stop touching buffers).
static int t_finish(dist *d) {
    thread_impl *t = d->impl;
    pthread_mutex_lock(&t->qmu);
    while (t->done < t->queued) pthread_cond_wait(&t->qcv, &t->qmu);
    int rc = t->failed ? -1 : 0;
    t->queued = t->done = 0;
    pthread_mutex_unlock(&t->qmu);
    return rc;
}

static int t_reduce_scatter(dist *d, float *buf, size_t n) { return t_finish(d) ? -1 : t_run_reduce_scatter(d, buf, n); }
static int t_all_reduce(dist *d, float *buf, size_t n) { return t_finish(d) ? -1 : t_run_all_reduce(d, buf, n); }
static int t_all_gather(dist *d, void *buf, size_t n, size_t es) { return t_finish(d) ? -1 : t_gather_shards(d, buf, n, es); }
static int t_sync_barrier(dist *d) { return t_finish(d) ? -1 : t_barrier(d); }
static int t_broadcast(dist *d, void *buf, size_t bytes, int root) {
    if (t_finish(d)) return -1;
    void **posted = t_posted(d);
    posted[d->rank] = buf;
    if (t_barrier(d)) return -1;
    if (d->rank != root) memcpy(buf, posted[root], bytes);
    return t_barrier(d);
}
static int t_all_reduce_host(dist *d, double *v, int n) {
    if (t_finish(d)) return -1;
    double *tmp = dist_host_scratch(d, sizeof(double) * (size_t)(n ? n : 1));
    if (!tmp) { snprintf(d->error, sizeof d->error, "out of memory"); dist_abort(d, d->error); return -1; }
    void **posted = t_posted(d);
    posted[d->rank] = v;
    if (t_barrier(d)) return -1;
    for (int i = 0; i < n; i++) {
        double s = ((const double *)posted[0])[i];
        for (int r = 1; r < d->world; r++) s += ((const double *)posted[r])[i];
        tmp[i] = s;
    }
    if (t_barrier(d)) return -1;
    memcpy(v, tmp, sizeof(double) * (size_t)n);
    return 0;
}
static void t_abort(dist *d, const char *why) {
    dist_group *g = ((thread_impl *)d->impl)->g;
    pthread_mutex_lock(&g->mu);
    if (!g->aborted) {
        g->aborted = 1;
        snprintf(g->why, sizeof g->why, "rank %d failed: %s", d->rank, why);
    }
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}
static void t_close(dist *d) {
    thread_impl *t = d->impl;
    if (t->worker_started) {
        pthread_mutex_lock(&t->qmu);
        t->stop = 1;
        pthread_cond_broadcast(&t->qcv);
        pthread_mutex_unlock(&t->qmu);
        pthread_join(t->worker, NULL);
    }
    pthread_mutex_destroy(&t->qmu);
    pthread_cond_destroy(&t->qcv);
    free(t);
    free(d);
}

static const dist_ops thread_ops = {.kind = "threads", .all_reduce = t_all_reduce, .reduce_scatter = t_reduce_scatter,
                                    .all_gather = t_all_gather, .broadcast = t_broadcast, .barrier = t_sync_barrier,
                                    .all_reduce_start = t_all_reduce_start,
                                    .reduce_scatter_start = t_reduce_scatter_start, .wait = t_wait,
                                    .finish = t_finish, .all_reduce_host = t_all_reduce_host,
                                    .broadcast_host = t_broadcast, .abort = t_abort, .close = t_close};

dist *dist_group_join(dist_group *g, int rank, backend *be) {
    dist *d = calloc(1, sizeof *d);
    thread_impl *t = calloc(1, sizeof *t);
    if (!d || !t) { free(d); free(t); return NULL; }
    t->g = g;
    pthread_mutex_init(&t->qmu, NULL);
    pthread_cond_init(&t->qcv, NULL);
    d->ops = &thread_ops;
    d->rank = rank;
    d->world = g->world;
    d->be = be;
    d->timeout_s = g->timeout_s;
    d->impl = t;
    return d;
}

// ---- TCP through rank 0 (CPU backend: buffers are host memory)

typedef struct {
    rendezvous *rv;
} tcp_impl;

static int tcp_fail(dist *d, const char *msg) {
    tcp_impl *t = d->impl;
    snprintf(d->error, sizeof d->error, "%s", msg);
    rendezvous_close(t->rv);   // the others see the connection close at once
    t->rv = NULL;
    return -1;
}

static int tcp_io(dist *d, int peer, void *buf, size_t bytes, int sending) {
    tcp_impl *t = d->impl;
    char err[400];
    if (!t->rv) { snprintf(d->error, sizeof d->error, "rank %d: the communicator was aborted", d->rank); return -1; }
    int rc = sending ? rendezvous_send(t->rv, peer, buf, bytes, err, sizeof err)
                     : rendezvous_recv(t->rv, peer, buf, bytes, err, sizeof err);
    return rc ? tcp_fail(d, err) : 0;
}


// Rank 0 adds every rank's buffer in rank order, then sends the sum back: the same bits as
// the thread implementation. T = float or double.
#define TCP_ALL_REDUCE(NAME, T)                                                                    \
    static int NAME(dist *d, T *buf, size_t n) {                                                   \
        if (d->rank != 0) return tcp_io(d, 0, buf, n * sizeof(T), 1) || tcp_io(d, 0, buf, n * sizeof(T), 0) ? -1 : 0; \
        T *tmp = dist_host_scratch(d, (n ? n : 1) * sizeof(T));                                          \
        if (!tmp) return tcp_fail(d, "out of memory in all-reduce");                              \
        for (int r = 1; r < d->world; r++) {                                                       \
            if (tcp_io(d, r, tmp, n * sizeof(T), 0)) return -1;                                    \
            for (size_t i = 0; i < n; i++) buf[i] += tmp[i];                                       \
        }                                                                                          \
        for (int r = 1; r < d->world; r++)                                                         \
            if (tcp_io(d, r, buf, n * sizeof(T), 1)) return -1;                                    \
        return 0;                                                                                  \
    }
TCP_ALL_REDUCE(tcp_all_reduce, float)
TCP_ALL_REDUCE(tcp_sum_doubles, double)

static int tcp_all_reduce_host(dist *d, double *v, int n) { return tcp_sum_doubles(d, v, (size_t)n); }
// Simple, not bandwidth-optimal: the CPU path exists to test the sharding logic.
static int tcp_reduce_scatter(dist *d, float *buf, size_t n) { return tcp_all_reduce(d, buf, n); }

static int tcp_all_gather(dist *d, void *buf, size_t n, size_t es) {
    size_t off, len;
    if (d->rank != 0) {
        dist_shard(n, d->world, d->rank, &off, &len);
        if (tcp_io(d, 0, (char *)buf + off * es, len * es, 1)) return -1;
        return tcp_io(d, 0, buf, n * es, 0);
    }
    for (int r = 1; r < d->world; r++) {
        dist_shard(n, d->world, r, &off, &len);
        if (tcp_io(d, r, (char *)buf + off * es, len * es, 0)) return -1;
    }
    for (int r = 1; r < d->world; r++)
        if (tcp_io(d, r, buf, n * es, 1)) return -1;
    return 0;
}

static int tcp_broadcast(dist *d, void *buf, size_t bytes, int root) {
    if (root != 0) {   // through rank 0
        if (d->rank == root && tcp_io(d, 0, buf, bytes, 1)) return -1;
        if (d->rank == 0 && tcp_io(d, root, buf, bytes, 0)) return -1;
    }
    if (d->rank != 0) return d->rank == root ? 0 : tcp_io(d, 0, buf, bytes, 0);
    for (int r = 1; r < d->world; r++)
        if (r != root && tcp_io(d, r, buf, bytes, 1)) return -1;
    return 0;
}

static int tcp_barrier(dist *d) {
    double x = 0;
    return tcp_sum_doubles(d, &x, 1);
}

static void tcp_abort(dist *d, const char *why) {
    char msg[480];
    snprintf(msg, sizeof msg, "rank %d failed: %s", d->rank, why);
    tcp_fail(d, msg);
}

static void tcp_close(dist *d) {
    tcp_impl *t = d->impl;
    rendezvous_close(t->rv);
    free(t);
    free(d);
}

static const dist_ops tcp_ops = {.kind = "tcp", .all_reduce = tcp_all_reduce, .reduce_scatter = tcp_reduce_scatter,
                                 .all_gather = tcp_all_gather, .broadcast = tcp_broadcast, .barrier = tcp_barrier,
                                 .all_reduce_host = tcp_all_reduce_host, .broadcast_host = tcp_broadcast,
                                 .abort = tcp_abort, .close = tcp_close};

dist *dist_open_tcp(const dist_env *e, backend *be, double timeout_s, char *err, size_t errlen) {
    if (be->device_index >= 0) {
        snprintf(err, errlen, "the TCP communicator is for the CPU backend; GPUs use NCCL");
        return NULL;
    }
    dist *d = calloc(1, sizeof *d);
    tcp_impl *t = calloc(1, sizeof *t);
    if (!d || !t) { free(d); free(t); snprintf(err, errlen, "out of memory"); return NULL; }
    if (e->world > 1) {
        t->rv = rendezvous_open(e->master_addr, e->master_port, e->rank, e->world, timeout_s, err, errlen);
        if (!t->rv) { free(d); free(t); return NULL; }
    }
    d->ops = &tcp_ops;
    d->rank = e->rank;
    d->world = e->world;
    d->be = be;
    d->timeout_s = timeout_s;
    d->impl = t;
    return d;
}

#ifndef QUARRY_HAVE_CUDA
dist *dist_open_nccl(const dist_env *e, backend *be, double timeout_s, char *err, size_t errlen) {
    (void)e; (void)be; (void)timeout_s;
    snprintf(err, errlen, "this quarry was built without CUDA, so it has no NCCL; use --device cpu");
    return NULL;
}
#endif
