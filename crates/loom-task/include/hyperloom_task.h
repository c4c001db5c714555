/*
 * hyperloom_task.h — the stable C ABI of HyperLoom native task libraries.
 *
 * A task library is a shared object (.so / .dylib / .dll) that a HyperLoom worker
 * loads at start-up. It exports exactly one symbol, HYPERLOOM_TASK_ENTRY_POINT
 * ("hyperloom_task_library"), a function returning a pointer to a hl_library
 * descriptor: the library's name and version and its task types (a symbol such
 * as "my/count" plus the function that runs it).
 *
 * Versioning
 *   HYPERLOOM_TASK_ABI_VERSION is bumped on every incompatible change. The first two
 *   fields of hl_library (struct_size, abi_version) keep their position forever:
 *   the host reads them before anything else and refuses a library whose
 *   abi_version differs from its own, or whose struct_size is smaller than the
 *   host's sizeof(hl_library). Compatible additions are only ever appended at the
 *   end of a struct that carries a struct_size field; readers ignore the fields
 *   they do not know.
 *
 * Ownership
 *   - Everything the host passes to a task function (the context, the input
 *     array, the input bytes, the config bytes) is owned by the host, read-only,
 *     and valid only until the task function returns. Copy what you keep.
 *   - Everything the library hands back (the descriptor and its strings, the
 *     result's bytes, item arrays and error message) is owned by the library.
 *     The descriptor and its strings must stay valid for as long as the library
 *     is loaded (in practice: static data; the host never unloads a library).
 *     A result must stay valid until the host calls result->release(result);
 *     that callback then frees the whole result tree. The host calls it exactly
 *     once, on the thread that ran the task, right after copying the result,
 *     and never touches the result afterwards. It is called whatever the result
 *     kind, errors included. Leave it NULL if there is nothing to free.
 *
 * Threading
 *   Task functions may be called from any thread, and several calls (of the same
 *   or different task types) may run at the same time on different threads, so
 *   task functions must be thread-safe (reentrant). One task instance is exactly
 *   one call: it runs entirely on one thread. ctx->log may only be used on the
 *   calling thread, during the call. The entry point may be called several times
 *   and must always return the same descriptor.
 *
 * Errors
 *   A task reports a failure by setting out->kind = HL_RESULT_ERROR and out->data /
 *   out->len to a UTF-8 message (not NUL-terminated); the worker reports it as a
 *   failed task and keeps serving. A task must not abort, exit, or let a C++
 *   exception or Rust panic escape: that takes the whole worker down.
 *
 * Symbols
 *   Task type symbols are NUL-terminated UTF-8 strings, unique within a library.
 *   The prefix "loom/" is reserved for built-in tasks; use your own prefix
 *   ("my/count"). All strings are UTF-8.
 */
#ifndef HYPERLOOM_TASK_H
#define HYPERLOOM_TASK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The ABI version described by this header. */
#define HYPERLOOM_TASK_ABI_VERSION 1u

/** The name of the one symbol a task library exports. */
#define HYPERLOOM_TASK_ENTRY_POINT "hyperloom_task_library"

#if defined(_WIN32)
#define HYPERLOOM_TASK_EXPORT __declspec(dllexport)
#else
#define HYPERLOOM_TASK_EXPORT __attribute__((visibility("default")))
#endif

/* ---- Inputs ---------------------------------------------------------------- */

/** hl_input.kind: a D-Object (raw data, an opened file): its bytes are available. */
#define HL_INPUT_DOBJECT 0u
/** hl_input.kind: any other data object (array, index, ...): data is NULL, len is 0. */
#define HL_INPUT_OTHER 1u

/** One input of a task, in the order of the task's inputs. */
typedef struct hl_input {
    /** The object's bytes (may be memory-mapped); NULL unless kind == HL_INPUT_DOBJECT.
     *  May also be NULL for an empty D-Object (len == 0). */
    const uint8_t *data;
    /** Number of bytes at data. */
    size_t len;
    /** The object's size as the protocol defines it (for a D-Object: its byte count). */
    uint64_t size;
    /** The object's length (number of elements of an array or index; 0 for a D-Object). */
    uint64_t length;
    /** HL_INPUT_DOBJECT or HL_INPUT_OTHER. */
    uint32_t kind;
} hl_input;

/* ---- Context: logging ------------------------------------------------------ */

#define HL_LOG_DEBUG 0
#define HL_LOG_INFO 1
#define HL_LOG_WARN 2
#define HL_LOG_ERROR 3

/** Opaque host state; pass it back to the callbacks of hl_context. */
typedef struct hl_host hl_host;

/** Writes a message (UTF-8, msg_len bytes, not necessarily NUL-terminated) to the worker's log. */
typedef void (*hl_log_fn)(hl_host *host, int32_t level, const uint8_t *msg, size_t msg_len);

/** What the host passes to every task call. Valid only during the call. */
typedef struct hl_context {
    /** sizeof(hl_context) as known by the host; fields may be appended later. */
    size_t struct_size;
    /** Pass to log. */
    hl_host *host;
    /** Never NULL. */
    hl_log_fn log;
} hl_context;

/* ---- Results --------------------------------------------------------------- */

/** hl_result.kind: nothing was set; the host reports a failure. */
#define HL_RESULT_NONE 0u
/** hl_result.kind: a raw data object holding data[0..len]. */
#define HL_RESULT_BYTES 1u
/** hl_result.kind: an array object whose elements are items[0..n_items]. */
#define HL_RESULT_ARRAY 2u
/** hl_result.kind: the task failed; data[0..len] is the UTF-8 error message. */
#define HL_RESULT_ERROR 3u

typedef struct hl_result hl_result;

/** Frees everything the library allocated for a result (the tree under it included). */
typedef void (*hl_release_fn)(hl_result *result);

/**
 * The result of a task call. The host zeroes it before the call (kind ==
 * HL_RESULT_NONE, all pointers NULL); the task fills it in.
 * For an array, each element is itself an hl_result of kind HL_RESULT_BYTES or
 * HL_RESULT_ARRAY (an HL_RESULT_ERROR element fails the task with its message);
 * the release, release_data fields of elements are ignored: only the top-level
 * release is called, and it frees the whole tree.
 */
struct hl_result {
    /** HL_RESULT_*. */
    uint32_t kind;
    /** BYTES: the bytes; ERROR: the message. May be NULL if len == 0. */
    const uint8_t *data;
    size_t len;
    /** ARRAY: the elements. May be NULL if n_items == 0. */
    const hl_result *items;
    size_t n_items;
    /** Called once by the host when it has copied the result; may be NULL. */
    hl_release_fn release;
    /** Free for the library's use (e.g. the allocation to free in release). */
    void *release_data;
};

/* ---- Task functions and the library descriptor ----------------------------- */

/**
 * Runs one task.
 *   ctx         logging; valid during the call.
 *   inputs      n_inputs inputs, in order (inputs may be NULL if n_inputs == 0).
 *   config      the task's config bytes (may be NULL if config_len == 0).
 *   out         zeroed by the host; set kind and the matching fields.
 */
typedef void (*hl_task_fn)(const hl_context *ctx, const hl_input *inputs, size_t n_inputs,
                           const uint8_t *config, size_t config_len, hl_result *out);

/** One task type of a library. */
typedef struct hl_task_entry {
    /** The task type symbol, e.g. "my/count" (NUL-terminated UTF-8). */
    const char *name;
    /** The function that runs it. Never NULL. */
    hl_task_fn run;
} hl_task_entry;

/** The library descriptor returned by the entry point. */
typedef struct hl_library {
    /** sizeof(hl_library). Fixed position. */
    size_t struct_size;
    /** HYPERLOOM_TASK_ABI_VERSION. Fixed position. */
    uint32_t abi_version;
    /** The library's name (NUL-terminated UTF-8), e.g. "my-lib". */
    const char *name;
    /** The library's own version (NUL-terminated UTF-8), e.g. "0.1.0". */
    const char *version;
    /** Number of entries in tasks. */
    size_t n_tasks;
    /** The task types. */
    const hl_task_entry *tasks;
} hl_library;

/** The signature of the entry point. */
typedef const hl_library *(*hl_entry_point_fn)(void);

/*
 * Each library defines it:
 *
 *   HYPERLOOM_TASK_EXPORT const hl_library *hyperloom_task_library(void) { return &MY_LIBRARY; }
 */
HYPERLOOM_TASK_EXPORT const hl_library *hyperloom_task_library(void);

#ifdef __cplusplus
}
#endif

#endif /* HYPERLOOM_TASK_H */
