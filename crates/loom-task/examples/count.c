/*
 * The user guide's `my/count`, written in C against hyperloom_task.h.
 *
 * It counts the occurrences of the one-byte config in its single D-Object input and
 * returns the count as 8 bytes, little-endian.
 *
 * Build:  cc -shared -fPIC -O2 -I crates/loom-task/include crates/loom-task/examples/count.c -o libcount_c.so
 * Load:   loom-worker ... --extension ./libcount_c.so
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hyperloom_task.h"

/* Frees the buffer a result points to; the library allocated it with malloc. */
static void release_result(hl_result *result)
{
    free(result->release_data);
    result->release_data = NULL;
}

/* Sets `out` to a malloc'ed copy of `len` bytes, of the given kind (bytes or error). */
static void set_bytes(hl_result *out, uint32_t kind, const void *bytes, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL) {
        static const char oom[] = "my/count: out of memory";
        out->kind = HL_RESULT_ERROR;
        out->data = (const uint8_t *)oom; /* static: nothing to release */
        out->len = sizeof(oom) - 1;
        return;
    }
    memcpy(copy, bytes, len);
    out->kind = kind;
    out->data = copy;
    out->len = len;
    out->release = release_result;
    out->release_data = copy;
}

static void set_error(hl_result *out, const char *message)
{
    set_bytes(out, HL_RESULT_ERROR, message, strlen(message));
}

static void my_count(const hl_context *ctx, const hl_input *inputs, size_t n_inputs,
                     const uint8_t *config, size_t config_len, hl_result *out)
{
    char message[128];
    if (config_len != 1) {
        snprintf(message, sizeof message, "my/count: the config must be exactly one byte, got %zu", config_len);
        set_error(out, message);
        return;
    }
    if (n_inputs != 1) {
        snprintf(message, sizeof message, "my/count: expected exactly one input, got %zu", n_inputs);
        set_error(out, message);
        return;
    }
    if (inputs[0].kind != HL_INPUT_DOBJECT) {
        set_error(out, "my/count: the input is not a D-Object");
        return;
    }

    uint64_t count = 0;
    for (size_t i = 0; i < inputs[0].len; i++) {
        if (inputs[0].data[i] == config[0]) {
            count++;
        }
    }

    snprintf(message, sizeof message, "my/count: %llu in %zu bytes", (unsigned long long)count, inputs[0].len);
    ctx->log(ctx->host, HL_LOG_DEBUG, (const uint8_t *)message, strlen(message));

    uint8_t le[8];
    for (int i = 0; i < 8; i++) {
        le[i] = (uint8_t)(count >> (8 * i));
    }
    set_bytes(out, HL_RESULT_BYTES, le, sizeof le);
}

static const hl_task_entry TASKS[] = {
    {"my/count", my_count},
};

static const hl_library LIBRARY = {
    sizeof(hl_library),
    HYPERLOOM_TASK_ABI_VERSION,
    "count-c",
    "0.1.0",
    sizeof(TASKS) / sizeof(TASKS[0]),
    TASKS,
};

HYPERLOOM_TASK_EXPORT const hl_library *hyperloom_task_library(void)
{
    return &LIBRARY;
}
