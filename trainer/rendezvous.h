// trainer/rendezvous.h — TCP meeting point of a multi-process run: rank 0 listens at
// MASTER_ADDR:MASTER_PORT, every other rank connects (retrying until the timeout) and says its
// rank; rank 0 then holds one connection per peer and each peer one to rank 0. Used to hand the
// ncclUniqueId over, and as the transport of the CPU multi-process communicator. Every wait is
// bounded; errors name the address.
#pragma once
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rendezvous rendezvous;

rendezvous *rendezvous_open(const char *addr, int port, int rank, int world, double timeout_s,
                            char *err, size_t errlen);
// Rank 0: the connection to rank `peer` (1..world-1). Others: to rank 0 (peer must be 0).
// Whole-buffer send/receive with the timeout; 0 ok, -1 with a message (peer gone, timed out).
int rendezvous_send(rendezvous *r, int peer, const void *buf, size_t bytes, char *err, size_t errlen);
int rendezvous_recv(rendezvous *r, int peer, void *buf, size_t bytes, char *err, size_t errlen);
// Closes every connection (the peers see end of stream at once).
void rendezvous_close(rendezvous *r);

#ifdef __cplusplus
}
#endif
