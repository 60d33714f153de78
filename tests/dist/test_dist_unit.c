// tests/dist/test_dist_unit.c — the communicator's pieces: shard arithmetic, Slurm node lists,
// launcher environments, and the thread collectives (3 ranks, odd lengths) giving the rank-order
// sums bit for bit, with a failed rank failing the others.
#include "test.h"
#include "trainer/dist.h"
#include <pthread.h>
#include <stdint.h>

#define WORLD 3
#define N 1001   // not a multiple of WORLD: the last shard is longer

static dist_group *group;
static int results[WORLD];

static float value(int rank, size_t i) { return (float)((rank + 1) * 0.1 + (double)i * 1e-3 + 1e-7 * rank); }

static void *rank_main(void *arg) {
    int rank = (int)(intptr_t)arg, bad = 0;
    backend *be = backend_cpu(1);
    dist *d = dist_group_join(group, rank, be);
    float *buf = malloc(sizeof(float) * N);
    for (size_t i = 0; i < N; i++) buf[i] = value(rank, i);
    if (dist_all_reduce(d, buf, N)) bad |= 1;
    for (size_t i = 0; i < N; i++) {
        float want = value(0, i);
        for (int r = 1; r < WORLD; r++) want += value(r, i);
        if (buf[i] != want) { bad |= 2; break; }
    }
    for (size_t i = 0; i < N; i++) buf[i] = value(rank, i);
    if (dist_reduce_scatter(d, buf, N)) bad |= 4;
    size_t off, len;
    dist_shard(N, WORLD, rank, &off, &len);
    for (size_t i = off; i < off + len; i++) {
        float want = value(0, i) + value(1, i) + value(2, i);
        if (buf[i] != want) { bad |= 8; break; }
    }
    // All-gather 2-byte elements: each rank fills its shard.
    uint16_t h[N];
    for (size_t i = 0; i < N; i++) h[i] = 0;
    for (size_t i = off; i < off + len; i++) h[i] = (uint16_t)(i * 7 + 1);
    if (dist_all_gather(d, h, N, DTYPE_BF16)) bad |= 16;
    for (size_t i = 0; i < N; i++)
        if (h[i] != (uint16_t)(i * 7 + 1)) { bad |= 32; break; }
    double v[2] = {rank, 1};
    if (dist_all_reduce_host(d, v, 2) || v[0] != 3 || v[1] != WORLD) bad |= 64;
    int32_t x = rank == 2 ? 42 : -1;
    if (dist_broadcast_host(d, &x, sizeof x, 2) || x != 42) bad |= 128;
    // Rank 1 fails; the others' next collective must fail too (not wait).
    if (rank == 1) dist_abort(d, "test failure");
    else if (dist_barrier(d) == 0 || !strstr(dist_error(d), "rank 1 failed: test failure")) bad |= 256;
    results[rank] = bad;
    free(buf);
    dist_close(d);
    be->destroy(be);
    return NULL;
}

int main(void) {
    size_t off, len, total = 0;
    for (int r = 0; r < 4; r++) {
        dist_shard(10, 4, r, &off, &len);
        CHECK(off == total, "shard %d starts at %zu, want %zu", r, off, total);
        total += len;
    }
    CHECK(total == 10, "shards cover %zu of 10", total);
    dist_shard(10, 4, 3, &off, &len);
    CHECK(off == 6 && len == 4, "last shard [%zu, +%zu), want [6, +4)", off, len);

    char host[64];
    CHECK(dist_first_host("node[01-04],gpu7", host, sizeof host) == 0 && !strcmp(host, "node01"), "got %s", host);
    CHECK(dist_first_host("gpu7,node[01-04]", host, sizeof host) == 0 && !strcmp(host, "gpu7"), "got %s", host);
    CHECK(dist_first_host("rack[3,5-6]-n[2-4]", host, sizeof host) == 0 && !strcmp(host, "rack3-n2"), "got %s", host);
    CHECK(dist_first_host("a-b.c", host, sizeof host) == 0 && !strcmp(host, "a-b.c"), "got %s", host);
    CHECK(dist_first_host("node[", host, sizeof host) != 0, "malformed list accepted");
    CHECK(dist_first_host("", host, sizeof host) != 0, "empty list accepted");

    char err[512];
    dist_env e;
    unsetenv("MASTER_ADDR");
    unsetenv("MASTER_PORT");
    unsetenv("WORLD_SIZE");
    CHECK(dist_env_detect(&e, err, sizeof err) == 0 && e.world == 1 && !strcmp(e.source, "single"), "plain: %s", e.source);
    setenv("WORLD_SIZE", "4", 1);
    setenv("RANK", "2", 1);
    setenv("LOCAL_RANK", "1", 1);
    CHECK(dist_env_detect(&e, err, sizeof err) != 0 && strstr(err, "MASTER_ADDR"), "torchrun without MASTER_ADDR: %s", err);
    setenv("MASTER_ADDR", "10.0.0.5", 1);
    setenv("MASTER_PORT", "1234", 1);
    CHECK(dist_env_detect(&e, err, sizeof err) == 0 && e.rank == 2 && e.world == 4 && e.local_rank == 1 &&
              !strcmp(e.master_addr, "10.0.0.5") && e.master_port == 1234, "torchrun: %s", err);
    setenv("TORCHELASTIC_USE_AGENT_STORE", "True", 1);
    CHECK(dist_env_detect(&e, err, sizeof err) == 0 && e.master_port == 1235, "torchrun agent: port %d", e.master_port);
    setenv("QUARRY_MASTER_PORT", "2000", 1);
    CHECK(dist_env_detect(&e, err, sizeof err) == 0 && e.master_port == 2000, "QUARRY_MASTER_PORT: %d", e.master_port);
    unsetenv("QUARRY_MASTER_PORT");
    unsetenv("TORCHELASTIC_USE_AGENT_STORE");
    setenv("RANK", "4", 1);
    CHECK(dist_env_detect(&e, err, sizeof err) != 0, "rank 4 of 4 accepted");
    setenv("RANK", "x", 1);
    CHECK(dist_env_detect(&e, err, sizeof err) != 0 && strstr(err, "RANK"), "bad RANK: %s", err);
    unsetenv("WORLD_SIZE");
    unsetenv("MASTER_ADDR");
    setenv("SLURM_PROCID", "5", 1);
    setenv("SLURM_NTASKS", "8", 1);
    setenv("SLURM_LOCALID", "1", 1);
    setenv("SLURM_STEP_ID", "0", 1);
    setenv("SLURM_JOB_NODELIST", "gpu[12-13]", 1);
    CHECK(dist_env_detect(&e, err, sizeof err) == 0 && e.rank == 5 && e.world == 8 && !strcmp(e.master_addr, "gpu12") &&
              !strcmp(e.source, "slurm"), "slurm: %s %s", err, e.master_addr);
    unsetenv("SLURM_STEP_ID");   // the batch script itself, not an srun step: one process
    CHECK(dist_env_detect(&e, err, sizeof err) == 0 && e.world == 1, "slurm batch script: world %d", e.world);
    unsetenv("SLURM_PROCID");
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    setenv("OMPI_COMM_WORLD_RANK", "1", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
    CHECK(dist_env_detect(&e, err, sizeof err) == 0 && e.rank == 1 && e.world == 2 && !strcmp(e.master_addr, "127.0.0.1"),
          "openmpi: %s", err);

    group = dist_group_create(WORLD, 30);
    pthread_t t[WORLD];
    for (int r = 0; r < WORLD; r++) pthread_create(&t[r], NULL, rank_main, (void *)(intptr_t)r);
    for (int r = 0; r < WORLD; r++) pthread_join(t[r], NULL);
    for (int r = 0; r < WORLD; r++) CHECK(results[r] == 0, "rank %d: failed checks, bit mask %#x", r, results[r]);
    dist_group_free(group);
    return test_finish("test_dist_unit");
}
