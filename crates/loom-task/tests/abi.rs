//! The Rust mirror in `loom_task::abi` matches `include/hyperloom_task.h`: a C program built with
//! the system compiler prints every size, offset and constant, and they must equal Rust's.

use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

use loom_task::abi::*;

const PROBE: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include "hyperloom_task.h"
#define S(t) printf(#t " %zu\n", sizeof(t));
#define O(t, f) printf(#t "." #f " %zu\n", offsetof(t, f));
#define C(c) printf(#c " %lld\n", (long long)(c));
int main(void) {
    S(hl_input) O(hl_input, data) O(hl_input, len) O(hl_input, size) O(hl_input, length) O(hl_input, kind)
    S(hl_context) O(hl_context, struct_size) O(hl_context, host) O(hl_context, log)
    S(hl_result) O(hl_result, kind) O(hl_result, data) O(hl_result, len) O(hl_result, items)
    O(hl_result, n_items) O(hl_result, release) O(hl_result, release_data)
    S(hl_task_entry) O(hl_task_entry, name) O(hl_task_entry, run)
    S(hl_library) O(hl_library, struct_size) O(hl_library, abi_version) O(hl_library, name)
    O(hl_library, version) O(hl_library, n_tasks) O(hl_library, tasks)
    C(HYPERLOOM_TASK_ABI_VERSION) C(HL_INPUT_DOBJECT) C(HL_INPUT_OTHER)
    C(HL_RESULT_NONE) C(HL_RESULT_BYTES) C(HL_RESULT_ARRAY) C(HL_RESULT_ERROR)
    C(HL_LOG_DEBUG) C(HL_LOG_INFO) C(HL_LOG_WARN) C(HL_LOG_ERROR)
    printf("entry %s\n", HYPERLOOM_TASK_ENTRY_POINT);
    return 0;
}
"#;

fn rust_side() -> String {
    let mut s = String::new();
    let mut size = |name: &str, v: usize| s.push_str(&format!("{name} {v}\n"));
    size("hl_input", size_of::<HlInput>());
    size("hl_input.data", offset_of!(HlInput, data));
    size("hl_input.len", offset_of!(HlInput, len));
    size("hl_input.size", offset_of!(HlInput, size));
    size("hl_input.length", offset_of!(HlInput, length));
    size("hl_input.kind", offset_of!(HlInput, kind));
    size("hl_context", size_of::<HlContext>());
    size("hl_context.struct_size", offset_of!(HlContext, struct_size));
    size("hl_context.host", offset_of!(HlContext, host));
    size("hl_context.log", offset_of!(HlContext, log));
    size("hl_result", size_of::<HlResult>());
    size("hl_result.kind", offset_of!(HlResult, kind));
    size("hl_result.data", offset_of!(HlResult, data));
    size("hl_result.len", offset_of!(HlResult, len));
    size("hl_result.items", offset_of!(HlResult, items));
    size("hl_result.n_items", offset_of!(HlResult, n_items));
    size("hl_result.release", offset_of!(HlResult, release));
    size("hl_result.release_data", offset_of!(HlResult, release_data));
    size("hl_task_entry", size_of::<HlTaskEntry>());
    size("hl_task_entry.name", offset_of!(HlTaskEntry, name));
    size("hl_task_entry.run", offset_of!(HlTaskEntry, run));
    size("hl_library", size_of::<HlLibrary>());
    size("hl_library.struct_size", offset_of!(HlLibrary, struct_size));
    size("hl_library.abi_version", offset_of!(HlLibrary, abi_version));
    size("hl_library.name", offset_of!(HlLibrary, name));
    size("hl_library.version", offset_of!(HlLibrary, version));
    size("hl_library.n_tasks", offset_of!(HlLibrary, n_tasks));
    size("hl_library.tasks", offset_of!(HlLibrary, tasks));
    let mut constant = |name: &str, v: i64| s.push_str(&format!("{name} {v}\n"));
    constant("HYPERLOOM_TASK_ABI_VERSION", ABI_VERSION.into());
    constant("HL_INPUT_DOBJECT", INPUT_DOBJECT.into());
    constant("HL_INPUT_OTHER", INPUT_OTHER.into());
    constant("HL_RESULT_NONE", RESULT_NONE.into());
    constant("HL_RESULT_BYTES", RESULT_BYTES.into());
    constant("HL_RESULT_ARRAY", RESULT_ARRAY.into());
    constant("HL_RESULT_ERROR", RESULT_ERROR.into());
    constant("HL_LOG_DEBUG", LOG_DEBUG.into());
    constant("HL_LOG_INFO", LOG_INFO.into());
    constant("HL_LOG_WARN", LOG_WARN.into());
    constant("HL_LOG_ERROR", LOG_ERROR.into());
    s.push_str(&format!("entry {ENTRY_POINT}\n"));
    s
}

#[test]
fn rust_mirror_matches_the_c_header() {
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("loom-task-abi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("probe.c");
    let binary = dir.join("probe");
    std::fs::write(&source, PROBE).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = match Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(&include)
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .status()
    {
        Ok(status) => status,
        Err(e) => {
            eprintln!("skipping: no C compiler ({cc}: {e})");
            return;
        }
    };
    assert!(status.success(), "{cc} failed to compile the header probe");
    let output = Command::new(&binary).output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), rust_side());
    let _ = std::fs::remove_dir_all(&dir);
}
