// trainer/tfevents.h — TensorBoard event files: the run's scalars for `tensorboard --logdir`.
//
// A file is a sequence of TFRecords (u64 length, u32 masked CRC32C of the length bytes, the
// data, u32 masked CRC32C of the data; all little-endian) each holding one serialized
// tensorboard.Event: the first carries file_version "brain.Event:2", the next ones wall_time,
// step and summary.value[]{tag, simple_value}. Every event is flushed as it is written, so a
// crash leaves a readable prefix (TensorBoard stops quietly at a truncated last record).
//
// Why no library: the format needs five protobuf fields, a varint and CRC32C — about 150 lines.
// TensorFlow's writer would bring TensorFlow; protobuf-c would bring a code generator, a runtime
// library and .proto files to vendor, for the same five fields.
//
// Files are never reopened: each training session (a start, every --resume) creates its own
// events.out.tfevents.<unix seconds>.<host>.<pid> beside the earlier ones, which TensorBoard
// reads in name (= time) order as one run.
#pragma once
#include <stddef.h>

typedef struct tfevents tfevents;

typedef struct {
    const char *tag;    // e.g. "train/loss"
    double value;       // stored as float32 (simple_value)
} tfevents_scalar;

// Creates a new event file in dir (an existing name is never reused) and writes its first
// event. NULL with a message naming the file.
tfevents *tfevents_open(const char *dir, char *err, size_t errlen);
// One event at step holding n scalars.
int tfevents_write_scalars(tfevents *t, long long step, const tfevents_scalar *v, int n);
// A SessionLog START at step: TensorBoard drops the values earlier files logged at steps >= step
// (a run resumed from the checkpoint of step - 1 recomputes them).
int tfevents_write_restart(tfevents *t, long long step);
const char *tfevents_path(const tfevents *t);
void tfevents_close(tfevents *t);

// CRC-32C (Castagnoli) of n bytes, and TFRecord's masked form of it.
unsigned tfevents_crc32c(const void *data, size_t n);
unsigned tfevents_masked_crc(const void *data, size_t n);
