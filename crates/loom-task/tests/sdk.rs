//! The SDK end to end inside one process: `export_tasks!` builds a descriptor, and calling
//! through it behaves as the header promises (results, errors, panics, release).

use std::ffi::CStr;

use loom_task::abi::{self, HlContext, HlHost, HlInput, HlLibrary, HlResult};
use loom_task::{Input, LogLevel, Output, TaskContext};

fn count(ctx: &TaskContext, inputs: &[Input], config: &[u8]) -> Result<Output, String> {
    let [byte] = config else {
        return Err(format!(
            "config must be exactly one byte, got {}",
            config.len()
        ));
    };
    let [input] = inputs else {
        return Err(format!("expected exactly one input, got {}", inputs.len()));
    };
    let data = input.bytes().ok_or("the input is not a D-Object")?;
    let n = data.iter().filter(|b| *b == byte).count() as u64;
    ctx.info(&format!("counted {n}"));
    Ok(Output::u64_le(n))
}

fn boom(_: &TaskContext, _: &[Input], _: &[u8]) -> Result<Output, String> {
    panic!("boom {}", 42)
}

fn nested(_: &TaskContext, inputs: &[Input], _: &[u8]) -> Result<Output, String> {
    Ok(Output::Array(vec![
        Output::from("a"),
        Output::Array(vec![Output::from(vec![1u8, 2]), Output::Array(vec![])]),
        Output::u64_le(inputs.iter().map(|i| i.size() + i.length()).sum()),
    ]))
}

loom_task::export_tasks!(name = "sdk-test", tasks = {
    "test/count" => count,
    "test/boom" => boom,
    "test/nested" => nested,
});

#[derive(Debug, PartialEq)]
enum Copied {
    Bytes(Vec<u8>),
    Array(Vec<Copied>),
    Error(String),
}

unsafe fn copy(r: &HlResult) -> Copied {
    let bytes = || unsafe { std::slice::from_raw_parts(r.data, r.len) }.to_vec();
    match r.kind {
        abi::RESULT_BYTES => Copied::Bytes(bytes()),
        abi::RESULT_ERROR => Copied::Error(String::from_utf8(bytes()).unwrap()),
        abi::RESULT_ARRAY => {
            let items = unsafe { std::slice::from_raw_parts(r.items, r.n_items) };
            Copied::Array(items.iter().map(|i| unsafe { copy(i) }).collect())
        }
        k => panic!("kind {k}"),
    }
}

unsafe extern "C" fn collect_log(host: *mut HlHost, level: i32, msg: *const u8, len: usize) {
    let logs = unsafe { &mut *(host as *mut Vec<(i32, String)>) };
    let text = unsafe { std::slice::from_raw_parts(msg, len) };
    logs.push((level, String::from_utf8_lossy(text).into_owned()));
}

fn library() -> &'static HlLibrary {
    unsafe { &*hyperloom_task_library() }
}

fn call(symbol: &str, inputs: &[HlInput], config: &[u8]) -> (Copied, Vec<(i32, String)>) {
    let lib = library();
    let entries = unsafe { std::slice::from_raw_parts(lib.tasks, lib.n_tasks) };
    let entry = entries
        .iter()
        .find(|e| unsafe { CStr::from_ptr(e.name) }.to_str().unwrap() == symbol)
        .unwrap();
    let mut logs: Vec<(i32, String)> = Vec::new();
    let ctx = HlContext {
        struct_size: std::mem::size_of::<HlContext>(),
        host: &mut logs as *mut Vec<(i32, String)> as *mut HlHost,
        log: collect_log,
    };
    let mut out = HlResult::empty();
    unsafe {
        (entry.run.unwrap())(
            &ctx,
            inputs.as_ptr(),
            inputs.len(),
            config.as_ptr(),
            config.len(),
            &mut out,
        )
    };
    let copied = unsafe { copy(&out) };
    assert!(out.release.is_some());
    unsafe { (out.release.unwrap())(&mut out) };
    assert!(out.release_data.is_null());
    (copied, logs)
}

fn dobject(bytes: &[u8]) -> HlInput {
    HlInput {
        data: bytes.as_ptr(),
        len: bytes.len(),
        size: bytes.len() as u64,
        length: 0,
        kind: abi::INPUT_DOBJECT,
    }
}

#[test]
fn descriptor() {
    let lib = library();
    assert_eq!(lib.struct_size, std::mem::size_of::<HlLibrary>());
    assert_eq!(lib.abi_version, abi::ABI_VERSION);
    assert_eq!(
        unsafe { CStr::from_ptr(lib.name) }.to_str().unwrap(),
        "sdk-test"
    );
    assert_eq!(
        unsafe { CStr::from_ptr(lib.version) }.to_str().unwrap(),
        env!("CARGO_PKG_VERSION")
    );
    let names: Vec<&str> = unsafe { std::slice::from_raw_parts(lib.tasks, lib.n_tasks) }
        .iter()
        .map(|e| unsafe { CStr::from_ptr(e.name) }.to_str().unwrap())
        .collect();
    assert_eq!(names, ["test/count", "test/boom", "test/nested"]);
    // The entry point always returns the same descriptor.
    assert!(std::ptr::eq(lib, library()));
}

#[test]
fn count_and_log() {
    let (result, logs) = call("test/count", &[dobject(b"abcabca")], b"a");
    assert_eq!(result, Copied::Bytes(3u64.to_le_bytes().to_vec()));
    assert_eq!(logs, [(abi::LOG_INFO, "counted 3".to_string())]);
}

#[test]
fn task_errors() {
    let (result, _) = call("test/count", &[dobject(b"abc")], b"ab");
    assert_eq!(
        result,
        Copied::Error("config must be exactly one byte, got 2".into())
    );
    let other = HlInput {
        data: std::ptr::null(),
        len: 0,
        size: 10,
        length: 2,
        kind: abi::INPUT_OTHER,
    };
    let (result, _) = call("test/count", &[other], b"a");
    assert_eq!(result, Copied::Error("the input is not a D-Object".into()));
    let (result, _) = call("test/count", &[], b"a");
    assert_eq!(
        result,
        Copied::Error("expected exactly one input, got 0".into())
    );
}

#[test]
fn panic_becomes_error() {
    let (result, _) = call("test/boom", &[], b"");
    assert_eq!(result, Copied::Error("task panicked: boom 42".into()));
}

#[test]
fn nested_arrays() {
    let other = HlInput {
        data: std::ptr::null(),
        len: 0,
        size: 10,
        length: 2,
        kind: abi::INPUT_OTHER,
    };
    let (result, _) = call("test/nested", &[dobject(b"xyz"), other], b"");
    assert_eq!(
        result,
        Copied::Array(vec![
            Copied::Bytes(b"a".to_vec()),
            Copied::Array(vec![Copied::Bytes(vec![1, 2]), Copied::Array(vec![])]),
            Copied::Bytes(15u64.to_le_bytes().to_vec()),
        ])
    );
}

#[test]
fn unit_testing_a_task_without_a_worker() {
    let mut logs = Vec::new();
    let result = TaskContext::with_logger(
        &mut |level, msg| logs.push((level, msg.to_string())),
        |ctx| count(ctx, &[Input::dobject(b"hello")], b"l"),
    );
    assert_eq!(result, Ok(Output::u64_le(2)));
    assert_eq!(logs, [(LogLevel::Info, "counted 2".to_string())]);
    let input = Input::other(7, 3);
    assert_eq!(
        (
            input.bytes(),
            input.size(),
            input.length(),
            input.is_dobject()
        ),
        (None, 7, 3, false)
    );
}
