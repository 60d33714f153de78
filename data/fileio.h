// data/fileio.h — file-system helpers every stage shares: whole-file reads, atomic writes
// (temporary name, fsync, rename, fsync of the directory), directories, SHA-256 of files.
// All return 0 on success and -1 with a message naming the path in err.
#pragma once
#include <stddef.h>

// Reads a whole file; *data is malloc'ed and NUL-terminated (length in *len).
int fileio_read_all(const char *path, char **data, size_t *len, char *err, size_t errlen);
// Writes path atomically: path.tmp.PID, fsync, rename over path, fsync of the directory.
int fileio_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen);
// The same, the file created with mode (e.g. 0600 for anything derived from training data).
int fileio_write_atomic_mode(const char *path, const void *data, size_t len, int mode, char *err, size_t errlen);
int fileio_fsync_path(const char *path, char *err, size_t errlen);   // a file or directory
// Creates path and its missing parents. A component that is a file is named as such.
int fileio_mkdir_p(const char *path, char *err, size_t errlen);
// The same, missing directories created with mode (existing ones keep theirs).
int fileio_mkdir_p_mode(const char *path, int mode, char *err, size_t errlen);
// Creates the directory that will hold path (mkdir -p of its parent), for outputs built beside
// their final name; nothing to do when path has no directory part.
int fileio_mkdir_parent(const char *path, char *err, size_t errlen);
// 0 when every existing component of path is a directory (what is missing could be created);
// -1 with "FILE is a file, not a directory" naming the first that is not.
int fileio_check_dir_path(const char *path, char *err, size_t errlen);
int fileio_remove_tree(const char *path, char *err, size_t errlen);
// 1 when path does not exist (or lies under a file) or is an empty directory, 0 when it has
// entries or is a file.
int fileio_is_empty_or_absent(const char *path);
int fileio_exists(const char *path);
// Lowercase hex SHA-256 of a file's bytes into hex[65].
int fileio_sha256_file(const char *path, char hex[65], char *err, size_t errlen);
// Copies a file (atomically at dst).
int fileio_copy_file(const char *src, const char *dst, char *err, size_t errlen);
// The absolute path path names, symlinks resolved; for a path that does not exist (yet), its
// nearest existing parent resolved and the rest appended. Compare two paths only this way.
int fileio_resolve_path(const char *path, char *out, size_t outlen, char *err, size_t errlen);
// 1 when the resolved path inner is outer or lies under it.
int fileio_path_within(const char *inner, const char *outer);
