//! Native task libraries end to end: the Rust example (built with cargo) and the C example and
//! test libraries (built with the system `cc`) are loaded with `Extension::load` and called.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use loom_core::data::DataRef;
use loom_core::extension::{ExtInput, ExtOutput, Extension, ExtensionError};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `$CARGO_TARGET_DIR` if set (relative to the workspace root), else `<workspace>/target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// Builds the Rust example once per test process and returns its path.
fn rust_example() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target = target_dir();
        let output = Command::new(cargo)
            .current_dir(workspace_root())
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--quiet", "-p", "hyperloom-example-count"])
            .output()
            .expect("running cargo");
        assert!(
            output.status.success(),
            "cargo build -p hyperloom-example-count failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let name = format!(
            "{}hyperloom_example_count{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        );
        let path = target.join("debug").join(name);
        assert!(path.exists(), "{} was not built", path.display());
        path
    })
}

/// The directory of the C test libraries (shared by concurrent runs: files are replaced atomically).
fn c_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = target_dir().join("extension-tests");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// Compiles C `source` (a file) into a shared library `name` with the system C compiler.
fn cc(source: &Path, name: &str) -> PathBuf {
    let out = c_dir().join(format!("lib{name}{}", std::env::consts::DLL_SUFFIX));
    let tmp = c_dir().join(format!("lib{name}.{}.tmp", std::process::id()));
    let include = workspace_root().join("crates/loom-task/include");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let output = Command::new(&compiler)
        .args([
            "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-I",
        ])
        .arg(&include)
        .arg(source)
        .arg("-o")
        .arg(&tmp)
        .output()
        .unwrap_or_else(|e| panic!("running the C compiler '{compiler}': {e}"));
    assert!(
        output.status.success(),
        "{compiler} failed on {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// Compiles the C text `code` into a shared library `name`.
fn cc_text(code: &str, name: &str) -> PathBuf {
    let source = c_dir().join(format!("{name}.{}.c", std::process::id()));
    std::fs::write(&source, code).unwrap();
    let library = cc(&source, name);
    let _ = std::fs::remove_file(&source);
    library
}

fn c_example() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        cc(
            &workspace_root().join("crates/loom-task/examples/count.c"),
            "count_c",
        )
    })
}

fn dobject(bytes: &[u8]) -> ExtInput<'_> {
    ExtInput {
        bytes: Some(bytes),
        size: bytes.len() as u64,
        length: 0,
    }
}

fn call(
    ext: &Extension,
    task: &str,
    inputs: &[ExtInput],
    config: &[u8],
) -> Result<ExtOutput, String> {
    ext.call(task, inputs, config, &mut |_, _| {})
}

fn load(path: &Path) -> Extension {
    Extension::load(path).unwrap_or_else(|e| panic!("{e}"))
}

fn three() -> ExtOutput {
    ExtOutput::Bytes(3u64.to_le_bytes().to_vec())
}

#[test]
fn rust_example_counts() {
    let ext = load(rust_example());
    assert_eq!(ext.name(), "hyperloom-example-count");
    assert_eq!(ext.version(), env!("CARGO_PKG_VERSION"));
    assert_eq!(ext.task_types(), ["my/count", "my/panic"]);
    assert!(ext.has_task_type("my/count") && !ext.has_task_type("my/other"));

    let mut logs = Vec::new();
    let out = ext.call(
        "my/count",
        &[dobject(b"abcabca")],
        b"a",
        &mut |level, msg| logs.push((level, msg.to_string())),
    );
    assert_eq!(out, Ok(three()));
    assert_eq!(logs, [(0, "my/count: 3 in 7 bytes".to_string())]);

    // Loading the same library twice is fine (it is simply shared).
    let again = load(rust_example());
    assert_eq!(
        call(&again, "my/count", &[dobject(b"")], b"x"),
        Ok(ExtOutput::Bytes(vec![0; 8]))
    );
}

#[test]
fn c_example_counts() {
    let ext = load(c_example());
    assert_eq!((ext.name(), ext.version()), ("count-c", "0.1.0"));
    assert_eq!(ext.task_types(), ["my/count"]);
    let mut logs = Vec::new();
    let out = ext.call(
        "my/count",
        &[dobject(b"abcabca")],
        b"a",
        &mut |level, msg| logs.push((level, msg.to_string())),
    );
    assert_eq!(out, Ok(three()));
    assert_eq!(logs, [(0, "my/count: 3 in 7 bytes".to_string())]);
}

#[test]
fn bad_use_is_a_task_error() {
    for ext in [load(rust_example()), load(c_example())] {
        let err = call(&ext, "my/count", &[dobject(b"abc")], b"ab").unwrap_err();
        assert_eq!(err, "my/count: the config must be exactly one byte, got 2");
        let err = call(&ext, "my/count", &[dobject(b"abc")], b"").unwrap_err();
        assert_eq!(err, "my/count: the config must be exactly one byte, got 0");
        let err = call(&ext, "my/count", &[dobject(b"a"), dobject(b"b")], b"a").unwrap_err();
        assert_eq!(err, "my/count: expected exactly one input, got 2");
        let array = ExtInput {
            bytes: None,
            size: 14,
            length: 2,
        };
        let err = call(&ext, "my/count", &[array], b"a").unwrap_err();
        assert_eq!(err, "my/count: the input is not a D-Object");
        let err = call(&ext, "my/nope", &[], b"").unwrap_err();
        assert!(
            err.contains("'my/nope' is not provided by task library"),
            "{err}"
        );
        // Still serving after the errors.
        assert_eq!(
            call(&ext, "my/count", &[dobject(b"abcabca")], b"a"),
            Ok(three())
        );
    }
}

#[test]
fn panic_is_a_task_error() {
    let ext = load(rust_example());
    let err = call(&ext, "my/panic", &[], b"oh no").unwrap_err();
    assert_eq!(err, "task panicked: my/panic: oh no");
    assert_eq!(
        call(&ext, "my/count", &[dobject(b"abcabca")], b"a"),
        Ok(three())
    );
}

#[test]
fn concurrent_calls() {
    let ext = Arc::new(load(rust_example()));
    let c = Arc::new(load(c_example()));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let ext = if i % 2 == 0 { ext.clone() } else { c.clone() };
            std::thread::spawn(move || {
                let data = vec![b'z'; 1000 + i];
                for _ in 0..200 {
                    let out = call(&ext, "my/count", &[dobject(&data)], b"z").unwrap();
                    assert_eq!(
                        out,
                        ExtOutput::Bytes((1000 + i as u64).to_le_bytes().to_vec())
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn missing_file() {
    let err = Extension::load(Path::new("/nonexistent/libnothing.so")).unwrap_err();
    assert!(matches!(err, ExtensionError::NotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("'/nonexistent/libnothing.so' not found"),
        "{text}"
    );
}

#[test]
fn not_a_library() {
    let path = c_dir().join(format!("not-a-library.{}.so", std::process::id()));
    std::fs::write(&path, "hello").unwrap();
    let err = Extension::load(&path).unwrap_err();
    assert!(matches!(err, ExtensionError::NotALibrary { .. }), "{err:?}");
    assert!(
        err.to_string().contains("is not a loadable shared library"),
        "{err}"
    );
    let _ = std::fs::remove_file(&path);
    let err = Extension::load(c_dir()).unwrap_err();
    assert!(matches!(err, ExtensionError::NotALibrary { .. }), "{err:?}");
}

#[test]
fn missing_entry_point() {
    let path = cc_text("int not_the_entry_point(void) { return 1; }\n", "no_entry");
    let err = Extension::load(&path).unwrap_err();
    assert!(
        matches!(err, ExtensionError::MissingEntryPoint { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(
            "is not a HyperLoom task library: it does not export `hyperloom_task_library`"
        ),
        "{text}"
    );
}

/// A C library declaring `abi_version` / `struct_size` as given, whose other fields are garbage
/// the host must never read.
fn abi_library(abi: &str, size: &str, name: &str) -> PathBuf {
    let code = format!(
        r#"#include "hyperloom_task.h"
struct weird {{ size_t struct_size; uint32_t abi_version; const char *name; }};
static const struct weird W = {{ {size}, {abi}, (const char *)1 }};
HYPERLOOM_TASK_EXPORT const hl_library *hyperloom_task_library(void) {{ return (const hl_library *)(const void *)&W; }}
"#
    );
    cc_text(&code, name)
}

#[test]
fn abi_version_mismatch() {
    let path = abi_library("999", "sizeof(struct weird)", "abi999");
    let err = Extension::load(&path).unwrap_err();
    match &err {
        ExtensionError::AbiMismatch {
            library_abi,
            host_abi,
            ..
        } => assert_eq!((*library_abi, *host_abi), (999, 1)),
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("abi999"), "{text}");
    assert!(
        text.contains("built for HyperLoom task ABI version 999"),
        "{text}"
    );
    assert!(
        text.contains("this worker implements ABI version 1"),
        "{text}"
    );
}

#[test]
fn struct_size_mismatch() {
    let path = abi_library(
        "HYPERLOOM_TASK_ABI_VERSION",
        "sizeof(struct weird)",
        "small_descriptor",
    );
    let err = Extension::load(&path).unwrap_err();
    let weird_size = 3 * std::mem::size_of::<usize>();
    assert!(
        matches!(err, ExtensionError::AbiMismatch { library_abi: 1, library_struct_size, .. } if library_struct_size == weird_size),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("(descriptor of {weird_size} bytes)")),
        "{err}"
    );
}

fn descriptor_library(tasks: &str, name: &str) -> PathBuf {
    let code = format!(
        r#"#include "hyperloom_task.h"
static void run(const hl_context *c, const hl_input *i, size_t n, const uint8_t *cfg, size_t len, hl_result *out) {{
    (void)c; (void)i; (void)n; (void)cfg; (void)len; (void)out;
}}
static const hl_task_entry TASKS[] = {{ {tasks} }};
static const hl_library L = {{ sizeof(hl_library), HYPERLOOM_TASK_ABI_VERSION, "bad", "9.9", sizeof(TASKS) / sizeof(TASKS[0]), TASKS }};
HYPERLOOM_TASK_EXPORT const hl_library *hyperloom_task_library(void) {{ (void)run; return &L; }}
"#
    );
    cc_text(&code, name)
}

#[test]
fn bad_descriptors() {
    let cases = [
        (
            r#"{"a/x", run}, {"a/x", run}"#,
            "dup",
            "task type 'a/x' is declared twice (library 'bad' 9.9)",
        ),
        (
            r#"{"loom/data/const", run}"#,
            "reserved",
            "uses the prefix 'loom/', which is reserved",
        ),
        (
            r#"{"a/x", 0}"#,
            "null_fn",
            "task type 'a/x' has a NULL function",
        ),
        (r#"{0, run}"#, "null_name", "task type #0: NULL string"),
        (
            r#"{"", run}"#,
            "empty_name",
            "task type #0 has an empty symbol",
        ),
    ];
    for (tasks, name, expected) in cases {
        let err = Extension::load(&descriptor_library(tasks, name)).unwrap_err();
        assert!(
            matches!(err, ExtensionError::BadDescriptor { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(expected), "{name}: {err}");
    }
}

/// A C library exercising the host's result handling: arrays, empty results, invalid results,
/// and a count of `release` calls.
const RESULTS_LIBRARY: &str = r#"#include <string.h>
#include "hyperloom_task.h"
static int releases = 0;
static void release(hl_result *r) { (void)r; releases++; }
#define ARGS const hl_context *c, const hl_input *i, size_t n, const uint8_t *cfg, size_t len, hl_result *out
#define UNUSED (void)c; (void)i; (void)n; (void)cfg; (void)len;
static const hl_result EMPTY_ITEMS[1] = {{ HL_RESULT_ARRAY, 0, 0, 0, 0, 0, 0 }};
static hl_result ITEMS[3];
static void array(ARGS) { UNUSED
    memset(ITEMS, 0, sizeof ITEMS);
    ITEMS[0].kind = HL_RESULT_BYTES; ITEMS[0].data = (const uint8_t *)"x"; ITEMS[0].len = 1;
    ITEMS[1].kind = HL_RESULT_ARRAY; ITEMS[1].items = EMPTY_ITEMS; ITEMS[1].n_items = 1;
    ITEMS[2].kind = HL_RESULT_BYTES; /* NULL data, 0 bytes: empty */
    out->kind = HL_RESULT_ARRAY; out->items = ITEMS; out->n_items = 3; out->release = release;
}
static void error_item(ARGS) { UNUSED
    memset(ITEMS, 0, sizeof ITEMS);
    ITEMS[0].kind = HL_RESULT_ERROR; ITEMS[0].data = (const uint8_t *)"item failed"; ITEMS[0].len = 11;
    out->kind = HL_RESULT_ARRAY; out->items = ITEMS; out->n_items = 1; out->release = release;
}
static void nothing(ARGS) { UNUSED out->release = release; }
static void null_bytes(ARGS) { UNUSED out->kind = HL_RESULT_BYTES; out->len = 5; out->release = release; }
static void weird_kind(ARGS) { UNUSED out->kind = 77; out->release = release; }
static void silent_error(ARGS) { UNUSED out->kind = HL_RESULT_ERROR; }
static void count_releases(ARGS) { UNUSED
    static uint8_t le[8];
    for (int k = 0; k < 8; k++) le[k] = (uint8_t)((uint64_t)releases >> (8 * k));
    out->kind = HL_RESULT_BYTES; out->data = le; out->len = 8;
}
static void echo_inputs(ARGS) { (void)c;
    /* config + for each input: kind, len, size, length, bytes */
    static uint8_t buf[256]; size_t at = 0;
    memcpy(buf + at, cfg, len); at += len;
    for (size_t k = 0; k < n; k++) {
        buf[at++] = (uint8_t)('0' + i[k].kind); buf[at++] = (uint8_t)('0' + i[k].len);
        buf[at++] = (uint8_t)('0' + i[k].size); buf[at++] = (uint8_t)('0' + i[k].length);
        if (i[k].kind == HL_INPUT_OTHER && i[k].data != 0) buf[at++] = '!';
        memcpy(buf + at, i[k].data, i[k].len); at += i[k].len;
    }
    out->kind = HL_RESULT_BYTES; out->data = buf; out->len = at;
}
static const hl_task_entry TASKS[] = {
    {"t/array", array}, {"t/error-item", error_item}, {"t/nothing", nothing}, {"t/null-bytes", null_bytes},
    {"t/weird-kind", weird_kind}, {"t/silent-error", silent_error}, {"t/releases", count_releases},
    {"t/echo", echo_inputs},
};
static const hl_library L = { sizeof(hl_library), HYPERLOOM_TASK_ABI_VERSION, "results", "1.2.3", sizeof(TASKS) / sizeof(TASKS[0]), TASKS };
HYPERLOOM_TASK_EXPORT const hl_library *hyperloom_task_library(void) { return &L; }
"#;

#[test]
fn result_handling() {
    let ext = load(&cc_text(RESULTS_LIBRARY, "results"));
    let releases = |ext: &Extension| match call(ext, "t/releases", &[], b"").unwrap() {
        ExtOutput::Bytes(b) => u64::from_le_bytes(b.try_into().unwrap()),
        other => panic!("{other:?}"),
    };
    assert_eq!(releases(&ext), 0);

    assert_eq!(
        call(&ext, "t/array", &[], b""),
        Ok(ExtOutput::Array(vec![
            ExtOutput::Bytes(b"x".to_vec()),
            ExtOutput::Array(vec![ExtOutput::Array(vec![])]),
            ExtOutput::Bytes(vec![]),
        ]))
    );
    assert_eq!(
        call(&ext, "t/error-item", &[], b""),
        Err("item failed".into())
    );
    let err = call(&ext, "t/nothing", &[], b"").unwrap_err();
    assert_eq!(
        err,
        "task 't/nothing' of task library 'results' 1.2.3 returned an invalid result: no result was set"
    );
    let err = call(&ext, "t/null-bytes", &[], b"").unwrap_err();
    assert!(
        err.ends_with("invalid result: NULL data with 5 bytes"),
        "{err}"
    );
    let err = call(&ext, "t/weird-kind", &[], b"").unwrap_err();
    assert!(
        err.ends_with("invalid result: unknown result kind 77"),
        "{err}"
    );
    assert_eq!(
        call(&ext, "t/silent-error", &[], b""),
        Err("the task failed without a message".into())
    );
    // Every result with a release callback was released exactly once, errors included.
    assert_eq!(releases(&ext), 5);

    let other = ExtInput {
        bytes: None,
        size: 7,
        length: 3,
    };
    assert_eq!(
        call(
            &ext,
            "t/echo",
            &[dobject(b"ab"), other, dobject(b"")],
            b"cfg"
        ),
        Ok(ExtOutput::Bytes(b"cfg0220ab10730000".to_vec()))
    );
}

// ---------------------------------------------------------------------------------------------
// The direct path: the worker core owns the libraries and hands out calls over its stored objects.

mod direct_path {
    use super::*;
    use loom_core::frame::{push_frame, FrameReader};
    use loom_core::proto::comm::{worker_command, worker_response, WorkerCommand, WorkerResponse};
    use loom_core::symbols::Symbols;
    use loom_core::worker::{NativeCall, Worker, WorkerConfig, WorkerError};
    use prost::Message;

    fn work_dir(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("loom-native-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn config(name: &str, extensions: Vec<PathBuf>) -> WorkerConfig {
        WorkerConfig {
            work_dir: work_dir(name),
            cpus: 2,
            data_port: 1234,
            extra_task_types: vec![],
            extensions,
        }
    }

    /// The server's dictionary with the library's types appended, as the server sends it.
    fn dictionary() -> Symbols {
        let mut s = Symbols::for_server();
        s.add("my/count");
        s.add("my/panic");
        s
    }

    fn worker(name: &str) -> Worker {
        let mut w = Worker::new(config(name, vec![rust_example().to_path_buf()])).unwrap();
        let mut b = Vec::new();
        push_frame(
            &mut b,
            &WorkerCommand {
                r#type: worker_command::Type::Dictionary as i32,
                symbols: dictionary().names().to_vec(),
                ..Default::default()
            },
        );
        w.on_server_data(&b).unwrap();
        assert!(w.take_output().logs.is_empty(), "no unknown symbols");
        w
    }

    fn command(ty: worker_command::Type, id: i32, f: impl FnOnce(&mut WorkerCommand)) -> Vec<u8> {
        let mut c = WorkerCommand {
            r#type: ty as i32,
            id: Some(id),
            ..Default::default()
        };
        f(&mut c);
        let mut b = Vec::new();
        push_frame(&mut b, &c);
        b
    }

    fn task(id: i32, ty: &str, config: &[u8], inputs: &[i32]) -> Vec<u8> {
        command(worker_command::Type::Task, id, |c| {
            c.task_type = dictionary().id(ty);
            c.task_config = Some(config.to_vec().into());
            c.task_inputs = inputs.to_vec();
            c.n_cpus = Some(1);
            c.checkpoint_path = Some(String::new());
        })
    }

    fn responses(bytes: &[u8]) -> Vec<WorkerResponse> {
        let mut r = FrameReader::new(u64::MAX);
        let mut out = Vec::new();
        r.feed::<loom_core::frame::FrameError>(bytes, |f| {
            out.push(WorkerResponse::decode(f).unwrap());
            Ok(())
        })
        .unwrap();
        out
    }

    /// Runs `call` on another thread, as the binding's pool does.
    fn run_elsewhere(call: NativeCall) -> loom_core::worker::NativeDone {
        std::thread::spawn(move || call.run()).join().unwrap()
    }

    /// The bytes of stored object `id`, read back through a SEND stream (its last frame).
    fn sent_bytes(w: &mut Worker, id: i32, len: usize) -> Vec<u8> {
        w.on_server_data(&command(worker_command::Type::Send, id, |c| {
            c.address = Some("127.0.0.1:1".into())
        }))
        .unwrap();
        let out = w.take_output();
        let stream = out.sends[0].to_vec();
        stream[stream.len() - len..].to_vec()
    }

    #[test]
    fn registers_the_library_task_types() {
        let w = worker("register");
        let frame = w.register_frame();
        let reg = loom_core::proto::comm::Register::decode(&frame[8..]).unwrap();
        assert!(reg.task_types.iter().any(|t| t == "my/count"));
        assert_eq!(w.extensions().libraries().len(), 1);
    }

    /// A mapped File input reaches the library as the core's own mapping: the file is deleted
    /// after `open` (so nothing could re-open it by path) and the stored object is removed
    /// while the call is in flight; the count is still right.
    #[test]
    fn a_native_task_reads_the_stored_mapping_not_the_path() {
        let mut w = worker("mapped");
        let dir = work_dir("mapped-input");
        let path = dir.join("letters.txt");
        let mut content = vec![b'a'; 4 << 20];
        for i in (0..content.len()).step_by(1000) {
            content[i] = b'b';
        }
        let expected = content.iter().filter(|&&b| b == b'b').count() as u64;
        std::fs::write(&path, &content).unwrap();

        w.on_server_data(&task(
            1,
            "loom/data/open",
            path.to_str().unwrap().as_bytes(),
            &[],
        ))
        .unwrap();
        let r = responses(&w.take_output().to_server);
        assert_eq!(r[0].r#type, worker_response::Type::Finished as i32);
        std::fs::remove_file(&path).unwrap();

        w.on_server_data(&task(2, "my/count", b"b", &[1])).unwrap();
        let mut out = w.take_output();
        assert!(out.js_tasks.is_empty(), "native tasks never go to JS");
        assert!(out.to_server.is_empty(), "not finished before it ran");
        let call = out.native_calls.pop().expect("one native call");
        assert_eq!((call.id(), call.task_type()), (2, "my/count"));
        // The call shares the stored object (store + call), it holds no copy.
        assert_eq!(DataRef::strong_count(&call.inputs()[0]), 2);
        assert_eq!(call.inputs()[0].type_name(), "loom/file");

        // The server drops the input meanwhile: the call's reference keeps the mapping alive.
        w.on_server_data(&command(worker_command::Type::Remove, 1, |_| {}))
            .unwrap();
        assert_eq!(DataRef::strong_count(&call.inputs()[0]), 1);
        let done = run_elsewhere(call);
        w.finish_native(done);
        let out = w.take_output();
        assert_eq!(
            responses(&out.to_server),
            vec![WorkerResponse {
                r#type: worker_response::Type::Finished as i32,
                id: 2,
                size: Some(8),
                length: Some(0),
                error_msg: None,
            }]
        );
        assert!(out.logs.iter().any(|(_, l)| l
            == &format!(
                "Task id=2 (my/count): my/count: {expected} in {} bytes",
                content.len()
            )));
        assert_eq!(sent_bytes(&mut w, 2, 8), expected.to_le_bytes());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn native_tasks_take_cpu_slots_and_errors_fail_only_their_task() {
        let mut w = worker("slots");
        let mut b = task(1, "loom/data/const", b"abcabca", &[]);
        for id in 2..=4 {
            b.extend(task(id, "my/count", b"a", &[1]));
        }
        b.extend(task(5, "my/panic", b"boom", &[]));
        w.on_server_data(&b).unwrap();
        let out = w.take_output();
        // Two CPUs: two calls run, the others wait for slots.
        assert_eq!(out.native_calls.len(), 2);
        let mut pending: Vec<NativeCall> = out.native_calls;
        let mut finished = Vec::new();
        let mut failed = Vec::new();
        while let Some(call) = pending.pop() {
            w.finish_native(run_elsewhere(call));
            let out = w.take_output();
            for r in responses(&out.to_server) {
                if r.r#type == worker_response::Type::Finished as i32 {
                    finished.push(r.id);
                } else {
                    failed.push((
                        r.id,
                        String::from_utf8_lossy(&r.error_msg.unwrap()).into_owned(),
                    ));
                }
            }
            pending.extend(out.native_calls);
        }
        finished.sort();
        assert_eq!(finished, vec![2, 3, 4]);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, 5);
        assert!(failed[0].1.contains("panicked"), "{}", failed[0].1);
        assert_eq!(sent_bytes(&mut w, 3, 8), 3u64.to_le_bytes());
    }

    #[test]
    fn a_task_type_defined_twice_is_refused() {
        let lib = rust_example().to_path_buf();
        let e = Worker::new(config("twice", vec![lib.clone(), lib.clone()])).unwrap_err();
        let WorkerError::Extension(ExtensionError::DuplicateTaskType { task_type, .. }) = &e else {
            panic!("{e}");
        };
        assert_eq!(task_type, "my/count");
        assert!(e.to_string().contains("already defined by"), "{e}");
        let e = Worker::new(config("missing", vec!["/nonexistent/lib.so".into()])).unwrap_err();
        assert!(
            matches!(e, WorkerError::Extension(ExtensionError::NotFound { .. })),
            "{e}"
        );
    }
}
