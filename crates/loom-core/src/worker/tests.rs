use crate::data::stream::encode_stream;
use std::time::Instant;

use super::*;
use crate::data::SPILL_LIMIT;
use crate::frame::push_raw_frame;
use crate::proto::comm::{worker_command, worker_response, Announce, DataHeader, WorkerResponse};

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("loom-worker-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn sym(name: &str) -> i32 {
    static DICT: std::sync::OnceLock<Symbols> = std::sync::OnceLock::new();
    DICT.get_or_init(Symbols::for_server).id(name).unwrap()
}

fn worker_with(name: &str, cpus: u32, extra: &[&str]) -> Worker {
    let mut w = Worker::new(WorkerConfig {
        work_dir: tmp(name),
        cpus,
        data_port: 1234,
        extra_task_types: extra.iter().map(|s| s.to_string()).collect(),
        extensions: vec![],
    })
    .unwrap();
    let mut names: Vec<String> = Symbols::for_server().names().to_vec();
    names.extend(extra.iter().map(|s| s.to_string()));
    let mut b = Vec::new();
    push_frame(
        &mut b,
        &WorkerCommand {
            r#type: worker_command::Type::Dictionary as i32,
            symbols: names,
            ..Default::default()
        },
    );
    w.on_server_data(&b).unwrap();
    w
}

fn worker(name: &str, cpus: u32) -> Worker {
    worker_with(name, cpus, &[])
}

fn task(id: i32, ty: &str, config: &[u8], inputs: &[i32], n_cpus: i32) -> Vec<u8> {
    let mut b = Vec::new();
    push_frame(
        &mut b,
        &WorkerCommand {
            r#type: worker_command::Type::Task as i32,
            id: Some(id),
            task_type: Some(sym(ty)),
            task_config: Some(config.to_vec().into()),
            task_inputs: inputs.to_vec(),
            n_cpus: Some(n_cpus),
            checkpoint_path: Some(String::new()),
            ..Default::default()
        },
    );
    b
}

fn simple(ty: worker_command::Type, id: i32, address: Option<&str>) -> Vec<u8> {
    let mut b = Vec::new();
    push_frame(
        &mut b,
        &WorkerCommand {
            r#type: ty as i32,
            id: Some(id),
            address: address.map(str::to_owned),
            ..Default::default()
        },
    );
    b
}

fn responses(bytes: &[u8]) -> Vec<WorkerResponse> {
    let mut r = FrameReader::new(u64::MAX);
    let mut out = Vec::new();
    r.feed::<FrameError>(bytes, |f| {
        out.push(WorkerResponse::decode(f).unwrap());
        Ok(())
    })
    .unwrap();
    assert_eq!(r.pending_bytes(), 0);
    out
}

fn finished(id: i32, size: u64, length: u64) -> WorkerResponse {
    WorkerResponse {
        r#type: worker_response::Type::Finished as i32,
        id,
        size: Some(size),
        length: Some(length),
        error_msg: None,
    }
}

fn failed(id: i32, msg: &str) -> WorkerResponse {
    WorkerResponse {
        r#type: worker_response::Type::Failed as i32,
        id,
        size: None,
        length: None,
        error_msg: Some(msg.as_bytes().to_vec().into()),
    }
}

fn plain_of(w: &Worker, id: i32) -> Vec<u8> {
    w.store[&id].bytes().unwrap().to_vec()
}

/// Runs `chunk` and returns the responses.
fn run(w: &mut Worker, chunk: &[u8]) -> Vec<WorkerResponse> {
    w.on_server_data(chunk).unwrap();
    responses(&w.take_output().to_server)
}

fn u64s(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn data_dir_must_not_exist() {
    let dir = tmp("datadir");
    let cfg = WorkerConfig {
        work_dir: dir.clone(),
        cpus: 1,
        data_port: 1,
        extra_task_types: vec![],
        extensions: vec![],
    };
    let w = Worker::new(cfg.clone()).unwrap();
    assert!(dir.join("data").is_dir());
    assert_eq!(w.data_dir(), dir.join("data"));
    let e = Worker::new(cfg).unwrap_err();
    assert!(e.to_string().starts_with("Cannot create 'data'"), "{e}");
}

#[test]
fn register_frame() {
    let w = worker_with("register", 3, &["my/task"]);
    let f = w.register_frame();
    let reg = Register::decode(&f[8..]).unwrap();
    assert_eq!(
        u64::from_le_bytes(f[..8].try_into().unwrap()),
        f.len() as u64 - 8
    );
    assert_eq!(reg.protocol_version, 2);
    assert_eq!(reg.r#type, 1);
    assert_eq!((reg.port, reg.cpus), (Some(1234), Some(3)));
    assert_eq!(reg.task_types.len(), 13 + 2 + 1);
    assert_eq!(reg.task_types[0], "loom/base/get");
    assert_eq!(
        reg.task_types[13..],
        ["loom/js/call", "loom/js/value", "my/task"]
    );
    assert_eq!(reg.data_types, WORKER_DATA_TYPES);
    assert!(w.take_output_is_empty_after_dictionary());
}

impl Worker {
    fn take_output_is_empty_after_dictionary(&self) -> bool {
        self.out.to_server.is_empty() && self.out.logs.is_empty()
    }
}

/// `a` is `b`: the same shared object, or the same tiny object held by value in both (copies
/// are what sharing means for those, see `DataRef`).
fn same(a: &DataRef, b: &DataRef) -> bool {
    DataRef::ptr_eq(a, b) || (a.is_inline() && b.is_inline() && a.bytes() == b.bytes())
}

fn decode<'a>(b: &'a [u8], inputs: &mut Vec<i32>) -> Result<wire::Command<'a>, &'static str> {
    let mut c = wire::Command::default();
    wire::decode_command(b, inputs, &mut c).map(|()| c)
}

#[test]
fn wire_codecs_match_prost() {
    for (ty, id, sl) in [
        (1, 0, Some((5u64, 0u64))),
        (1, -1, Some((u64::MAX, 300))),
        (3, 123456, None),
        (5, i32::MAX, None),
    ] {
        let mut mine = Vec::new();
        wire::push_response(&mut mine, ty, id, sl);
        let mut theirs = Vec::new();
        push_frame(
            &mut theirs,
            &WorkerResponse {
                r#type: ty,
                id,
                size: sl.map(|x| x.0),
                length: sl.map(|x| x.1),
                error_msg: None,
            },
        );
        assert_eq!(mine, theirs);
        // Appended after what `out` holds already, as a chunk's answers are.
        let mut two = mine.clone();
        wire::push_response(&mut two, ty, id, sl);
        assert_eq!(two, [&theirs[..], &theirs[..]].concat());
    }
    let long = "x".repeat(300);
    for msg in ["", "boom", long.as_str()] {
        let mut mine = Vec::new();
        wire::push_error(&mut mine, 4, -7, msg.as_bytes());
        let mut theirs = Vec::new();
        push_frame(&mut theirs, &failed(-7, msg));
        assert_eq!(mine, theirs);
    }
    // Commands: unpacked (prost default for proto2) and packed inputs, negative ids, unknown fields.
    let c = WorkerCommand {
        r#type: 1,
        id: Some(-5),
        task_type: Some(8),
        task_config: Some(b"cfg".to_vec().into()),
        task_inputs: vec![1, 300, -2],
        n_cpus: Some(2),
        checkpoint_path: Some("/cp".into()),
        address: Some("1.2.3.4:5".into()),
        symbols: vec!["a".into()],
        trace_path: Some("/t".into()),
        worker_id: Some(3),
        traced: Some(true),
        server_features: vec![],
    };
    let enc = c.encode_to_vec();
    let mut inputs = Vec::new();
    let d = decode(&enc, &mut inputs).unwrap();
    assert_eq!(
        (d.ty, d.id, d.task_type, d.n_cpus),
        (Some(1), Some(-5), Some(8), 2)
    );
    assert_eq!(
        (d.config, d.checkpoint_path, d.address),
        (&b"cfg"[..], &b"/cp"[..], &b"1.2.3.4:5"[..])
    );
    assert_eq!(inputs, [1, 300, -2]);
    assert!(d.traced);
    // TASK with packed inputs [1,2,3] and an unknown fixed32 field 15.
    let packed = [0x08, 0x01, 0x2a, 0x03, 0x01, 0x02, 0x03, 0x7d, 1, 2, 3, 4];
    let d = decode(&packed, &mut inputs).unwrap();
    assert_eq!((d.ty, inputs.as_slice()), (Some(1), &[1, 2, 3][..]));
    assert!(decode(&[0x08], &mut inputs).is_err());
    assert!(decode(&[0x22, 0x05, 0x01], &mut inputs).is_err());
}

#[test]
fn const_merge_size_length() {
    let mut w = worker("basic", 1);
    let mut b = task(0, "loom/data/const", b"ABCDE", &[], 0);
    b.extend(task(1, "loom/data/const", b"123", &[], 0));
    b.extend(task(2, "loom/data/merge", b"", &[0, 1], 0));
    b.extend(task(3, "loom/data/merge", b", ", &[0, 1, 0], 0));
    b.extend(task(4, "loom/data/merge", b"--", &[], 0));
    b.extend(task(5, "loom/data/merge", b"--", &[1], 0));
    b.extend(task(6, "loom/array/make", b"", &[0, 0], 0));
    b.extend(task(7, "loom/base/size", b"", &[6], 0));
    b.extend(task(8, "loom/base/length", b"", &[6], 0));
    b.extend(task(9, "loom/base/size", b"", &[0, 1, 6], 0));
    b.extend(task(10, "loom/base/length", b"", &[], 0));
    b.extend(task(11, "loom/data/const", b"", &[], 0));
    b.extend(task(12, "loom/data/merge", b"", &[6], 0));
    let r = run(&mut w, &b);
    assert_eq!(
        r,
        [
            finished(0, 5, 0),
            finished(1, 3, 0),
            finished(2, 8, 0),
            finished(3, 17, 0),
            finished(4, 0, 0),
            finished(5, 3, 0),
            finished(6, 10, 2),
            finished(7, 8, 0),
            finished(8, 8, 0),
            finished(9, 8, 0),
            finished(10, 8, 0),
            finished(11, 0, 0),
            failed(
                12,
                "loom/data/merge: input 0 is Array, not raw data or a file"
            ),
        ]
    );
    assert_eq!(plain_of(&w, 2), b"ABCDE123");
    assert_eq!(plain_of(&w, 3), b"ABCDE, 123, ABCDE");
    assert_eq!(plain_of(&w, 4), b"");
    assert_eq!(plain_of(&w, 5), b"123");
    assert_eq!(plain_of(&w, 7), 10u64.to_le_bytes());
    assert_eq!(plain_of(&w, 8), 2u64.to_le_bytes());
    assert_eq!(plain_of(&w, 9), 18u64.to_le_bytes());
    assert_eq!(plain_of(&w, 10), 0u64.to_le_bytes());
}

#[test]
fn split_get_slice() {
    let mut w = worker("split", 1);
    let mut b = task(0, "loom/data/const", b"Line1\nLine2\nLine3\nLine4", &[], 0);
    b.extend(task(1, "loom/data/split", b"", &[0], 0));
    b.extend(task(2, "loom/base/get", &u64s(&[1]), &[1], 0));
    b.extend(task(3, "loom/base/get", &u64s(&[3]), &[1], 0));
    b.extend(task(4, "loom/base/get", &u64s(&[4]), &[1], 0));
    b.extend(task(5, "loom/base/slice", &u64s(&[1, 3]), &[1], 0));
    b.extend(task(6, "loom/base/slice", &u64s(&[3, 60]), &[1], 0));
    b.extend(task(7, "loom/base/slice", &u64s(&[3, 1]), &[1], 0));
    b.extend(task(8, "loom/base/get", &u64s(&[0]), &[0], 0));
    b.extend(task(9, "loom/base/slice", &u64s(&[0, 1]), &[0], 0));
    b.extend(task(10, "loom/data/const", b"", &[], 0));
    b.extend(task(11, "loom/data/split", b"", &[10], 0));
    b.extend(task(12, "loom/base/get", &u64s(&[0]), &[10], 0));
    b.extend(task(13, "loom/base/get", b"1234", &[1], 0));
    b.extend(task(14, "loom/base/get", &u64s(&[0]), &[1, 1], 0));
    let r = run(&mut w, &b);
    assert_eq!(r[1], finished(1, 23 + 8 * 5, 4));
    assert_eq!(r[2], finished(2, 6, 0));
    assert_eq!(plain_of(&w, 2), b"Line2\n");
    assert_eq!(plain_of(&w, 3), b"Line4");
    assert_eq!(
        r[4],
        failed(
            4,
            "loom/data/get on Index: index 4 is out of range (length=4)"
        )
    );
    assert_eq!(plain_of(&w, 5), b"Line2\nLine3\n");
    assert_eq!(plain_of(&w, 6), b"Line4");
    assert_eq!(plain_of(&w, 7), b"");
    assert_eq!(
        r[8],
        failed(
            8,
            "loom/data/get on RawData file=: index 0 is out of range (length=0)"
        )
    );
    assert_eq!(
        r[9],
        failed(
            9,
            "loom/base/slice on RawData file=: only an Array or an Index can be sliced"
        )
    );
    assert_eq!(r[11], finished(11, 8, 0)); // empty input: zero pieces
    assert_eq!(
        r[12],
        failed(
            12,
            "loom/data/get on RawData file=: index 0 is out of range (length=0)"
        )
    );
    assert_eq!(
        r[13],
        failed(
            13,
            "loom/base/get: config must be 8 bytes (1 x u64le), got 4"
        )
    );
    assert_eq!(
        r[14],
        failed(14, "loom/base/get needs exactly 1 input, got 2")
    );
    // Pieces are views of the base: no file, no copy.
    assert!(w.store[&2].file_path().is_none());
}

#[test]
fn array_get_and_slice() {
    let mut w = worker("array", 1);
    let mut b = Vec::new();
    for i in 0..20 {
        b.extend(task(i, "loom/data/const", i.to_string().as_bytes(), &[], 0));
    }
    b.extend(task(
        20,
        "loom/array/make",
        b"",
        &(0..20).collect::<Vec<_>>(),
        0,
    ));
    let cases: [(u64, u64, &[&[u8]]); 5] = [
        (0, 100, &[]),
        (50, 100, &[]),
        (2, 4, &[b"2", b"3"]),
        (1, 0, &[]),
        (4, 100, &[]),
    ];
    for (k, (from, to, _)) in cases.iter().enumerate() {
        b.extend(task(
            21 + k as i32,
            "loom/base/slice",
            &u64s(&[*from, *to]),
            &[20],
            0,
        ));
    }
    b.extend(task(30, "loom/array/make", b"", &[0], 0));
    b.extend(task(31, "loom/base/get", &u64s(&[3]), &[30], 0));
    b.extend(task(32, "loom/base/get", &u64s(&[0]), &[30], 0));
    b.extend(task(33, "loom/array/make", b"", &[], 0));
    let r = run(&mut w, &b);
    let lens: Vec<_> = (21..26).map(|i| w.store[&i].length()).collect();
    assert_eq!(lens, [20, 0, 2, 0, 16]);
    assert_eq!(w.store[&23].get(1).unwrap().bytes().unwrap(), b"3");
    assert_eq!(r.len(), 30);
    assert_eq!(
        r[27],
        failed(
            31,
            "loom/data/get on Array: index 3 is out of range (length=1)"
        )
    );
    assert!(same(&w.store[&32], &w.store[&0]));
    assert_eq!(r[28], finished(32, 1, 0));
    assert_eq!(r[29], finished(33, 0, 0));
}

#[test]
fn open_and_save() {
    let mut w = worker("open", 1);
    let dir = tmp("open-files");
    let f = dir.join("in.txt");
    std::fs::write(&f, b"a\nb\n").unwrap();
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let missing = dir.join("missing.txt");
    let out = dir.join("out.txt");
    let p = |x: &std::path::Path| x.to_str().unwrap().as_bytes().to_vec();
    let mut b = task(0, "loom/data/open", &p(&f), &[], 0);
    b.extend(task(1, "loom/data/open", &p(&missing), &[], 0));
    b.extend(task(2, "loom/data/open", &p(&empty), &[], 0));
    b.extend(task(3, "loom/data/split", b"", &[0], 0));
    b.extend(task(4, "loom/data/save", &p(&out), &[0], 1));
    b.extend(task(5, "loom/data/save", b"rel/path", &[0], 1));
    b.extend(task(6, "loom/data/save", b"", &[0], 1));
    b.extend(task(7, "loom/data/save", b"/", &[0], 1));
    b.extend(task(9, "loom/array/make", b"", &[0], 0));
    b.extend(task(10, "loom/data/save", &p(&out), &[9], 1));
    let r = run(&mut w, &b);
    assert_eq!(r[0], finished(0, 4, 0));
    assert_eq!(w.store[&0].type_name(), "loom/file");
    assert_eq!(
        r[1],
        failed(
            1,
            &format!(
                "Cannot open file '{}': No such file or directory",
                missing.display()
            )
        )
    );
    assert_eq!(r[2], finished(2, 0, 0));
    assert_eq!(r[3], finished(3, 4 + 8 * 3, 2));
    assert_eq!(r[4], finished(4, 0, 0));
    assert_eq!(std::fs::read(&out).unwrap(), b"a\nb\n");
    assert_eq!(r[5], failed(5, "Path 'rel/path' is not absolute path"));
    assert_eq!(r[6], failed(6, "Path '' is not absolute path"));
    assert_eq!(r[7], failed(7, "Openning '/' failed: Is a directory"));
    assert_eq!(
        r[9],
        failed(10, "loom/data/save: input is Array, not raw data or a file")
    );
    // Releasing an opened file never deletes it.
    run(&mut w, &simple(worker_command::Type::Remove, 0, None));
    assert!(f.exists());
}

#[test]
fn unknown_tasks_fail() {
    let mut w = worker("unknown", 1);
    let mut b = task(2, "loom/scheduler/dslice", b"", &[], 0);
    let mut c = WorkerCommand::decode(&task(3, "loom/data/const", b"", &[], 0)[8..]).unwrap();
    c.task_type = Some(999);
    push_frame(&mut b, &c);
    c.task_type = None;
    c.id = Some(4);
    push_frame(&mut b, &c);
    let r = run(&mut w, &b);
    assert_eq!(
        r,
        [
            failed(
                2,
                "Task with unknown type 2 (loom/scheduler/dslice) received"
            ),
            failed(
                3,
                "Task with unknown type 999 (not in the dictionary) received"
            ),
            failed(
                4,
                "Task with unknown type -1 (not in the dictionary) received"
            ),
        ]
    );
    // Commands with nothing to fail are logged.
    let mut b = simple(worker_command::Type::Send, 77, Some("1.2.3.4:5"));
    b.extend(simple(worker_command::Type::Remove, 77, None));
    let mut weird = Vec::new();
    push_frame(
        &mut weird,
        &WorkerCommand {
            r#type: 42,
            ..Default::default()
        },
    );
    b.extend(weird);
    w.on_server_data(&b).unwrap();
    let out = w.take_output();
    assert!(out.to_server.is_empty() && out.sends.is_empty());
    assert_eq!(out.logs.len(), 3, "{:?}", out.logs);
    assert_eq!(out.logs[0].0, LogLevel::Error);
    // A malformed frame is a broken stream.
    let mut bad = Vec::new();
    push_raw_frame(&mut bad, &[0x08]);
    assert!(w.on_server_data(&bad).is_err());
}

#[test]
fn send_output_bytes() {
    let mut w = worker("send", 1);
    let mut b = task(5, "loom/data/const", b"AB", &[], 0);
    b.extend(simple(worker_command::Type::Send, 5, Some("!:9999")));
    b.extend(task(6, "loom/data/const", b"", &[], 0));
    b.extend(task(7, "loom/array/make", b"", &[5, 6], 0));
    b.extend(simple(worker_command::Type::Send, 7, Some("10.0.0.2:4000")));
    w.on_server_data(&b).unwrap();
    let out = w.take_output();
    assert_eq!(responses(&out.to_server).len(), 3); // FINISHED only; no TRANSFERED from the sender
    assert_eq!(out.sends.len(), 2);
    assert_eq!(out.sends[0].address, "!:9999");
    let mut exp = Vec::new();
    push_frame(
        &mut exp,
        &DataHeader {
            id: 5,
            n_messages: 1,
            type_id: 19,
        },
    );
    push_raw_frame(&mut exp, b"AB");
    assert_eq!(out.sends[0].to_vec(), exp);
    assert_eq!(out.sends[1].address, "10.0.0.2:4000");
    let mut exp = Vec::new();
    push_frame(
        &mut exp,
        &DataHeader {
            id: 7,
            n_messages: 3,
            type_id: 18,
        },
    );
    push_raw_frame(&mut exp, &[19, 0, 0, 0, 19, 0, 0, 0]);
    push_raw_frame(&mut exp, b"AB");
    push_raw_frame(&mut exp, b"");
    assert_eq!(out.sends[1].to_vec(), exp);
}

#[test]
fn sends_of_one_event_to_one_address_are_one_stream_in_order() {
    let mut w = worker("send-join", 1);
    let mut b = Vec::new();
    for id in 1..=4 {
        b.extend(task(
            id,
            "loom/data/const",
            format!("x{id}").as_bytes(),
            &[],
            0,
        ));
    }
    // Interleaved addresses: each address keeps its own order.
    for (id, to) in [
        (1, "10.0.0.2:4000"),
        (2, "!:9999"),
        (3, "10.0.0.2:4000"),
        (4, "10.0.0.2:4000"),
    ] {
        b.extend(simple(worker_command::Type::Send, id, Some(to)));
    }
    w.on_server_data(&b).unwrap();
    let out = w.take_output();
    assert_eq!(out.sends.len(), 2);
    assert_eq!(out.sends[0].address, "10.0.0.2:4000");
    assert_eq!(out.sends[0].ids, [1, 3, 4]);
    assert_eq!(
        out.sends[0].parts.len(),
        1,
        "small streams joined into one buffer"
    );
    let mut exp = Vec::new();
    for id in [1, 3, 4] {
        push_frame(
            &mut exp,
            &DataHeader {
                id,
                n_messages: 1,
                type_id: 19,
            },
        );
        push_raw_frame(&mut exp, format!("x{id}").as_bytes());
    }
    assert_eq!(out.sends[0].to_vec(), exp);
    assert_eq!(out.sends[1].address, "!:9999");
    assert_eq!(out.sends[1].ids, [2]);
}

#[test]
fn resend_repeats_a_stored_object_and_skips_a_released_one() {
    let mut w = worker("resend", 1);
    let mut b = task(5, "loom/data/const", b"AB", &[], 0);
    b.extend(simple(worker_command::Type::Send, 5, Some("10.0.0.2:4000")));
    w.on_server_data(&b).unwrap();
    let first = w.take_output().sends;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].ids, [5]);
    // Its connection broke: the same stream again, to the same peer.
    w.resend(5, "10.0.0.2:4000");
    let again = w.take_output();
    assert_eq!(again.sends.len(), 1);
    assert_eq!(again.sends[0].address, "10.0.0.2:4000");
    assert_eq!(again.sends[0].to_vec(), first[0].to_vec());
    assert!(again.to_server.is_empty());
    // Released meanwhile: nothing to send.
    w.on_server_data(&simple(worker_command::Type::Remove, 5, None))
        .unwrap();
    w.take_output();
    w.resend(5, "10.0.0.2:4000");
    assert!(w.take_output().sends.is_empty());
}

/// An object in a data file is a send of its own (a peer on this host may be given it by its
/// file: `peer-link` links sends of one object), while the small ones of the event around it
/// to the same address stay one stream, in order.
#[test]
fn an_object_in_a_data_file_is_sent_alone_the_small_ones_together() {
    let mut w = worker("send-alone", 1);
    let big = vec![b'x'; SPILL_LIMIT + 1];
    let mut b = Vec::new();
    b.extend(task(1, "loom/data/const", b"x1", &[], 0));
    b.extend(task(2, "loom/data/const", &big, &[], 0));
    b.extend(task(3, "loom/data/const", b"x3", &[], 0));
    b.extend(task(4, "loom/data/const", &big, &[], 0));
    w.on_server_data(&b).unwrap();
    w.take_output();
    assert!(w.store[&2].file_path().is_some(), "spilled");
    let mut b = Vec::new();
    for id in 1..=4 {
        b.extend(simple(
            worker_command::Type::Send,
            id,
            Some("10.0.0.2:4000"),
        ));
    }
    w.on_server_data(&b).unwrap();
    let out = w.take_output();
    let sends: Vec<(&[i32], bool)> = out.sends.iter().map(|s| (&s.ids[..], s.alone)).collect();
    assert_eq!(
        sends,
        [(&[1, 3][..], false), (&[2][..], true), (&[4][..], true)]
    );
    assert!(out.sends.iter().all(|s| s.address == "10.0.0.2:4000"));
}

#[test]
fn remove_deletes_spilled_files_when_unused() {
    let mut w = worker_with("remove", 1, &["my/task"]);
    let big = vec![b'x'; SPILL_LIMIT + 1];
    let r = run(&mut w, &task(1, "loom/data/const", &big, &[], 0));
    assert_eq!(r, [finished(1, big.len() as u64, 0)]);
    let path = w.store[&1].file_path().unwrap().to_owned();
    assert!(path.starts_with(w.data_dir()));
    assert!(path.exists());
    // A running JS task keeps its own reference.
    let mut t = WorkerCommand::decode(&task(2, "loom/data/const", b"", &[1], 0)[8..]).unwrap();
    t.task_type = Some(Symbols::for_server().names().len() as i32); // my/task
    let mut b = Vec::new();
    push_frame(&mut b, &t);
    b.extend(simple(worker_command::Type::Remove, 1, None));
    w.on_server_data(&b).unwrap();
    let out = w.take_output();
    assert_eq!(out.js_tasks.len(), 1);
    assert_eq!(out.js_tasks[0].task_type, "my/task");
    assert_eq!(
        out.js_tasks[0].inputs[0].path.as_deref(),
        Some(path.to_str().unwrap())
    );
    assert_eq!(out.js_tasks[0].inputs[0].bytes, None);
    assert!(path.exists());
    w.finish_js_task(2, JsResult::Plain(b"done".to_vec()));
    assert!(!path.exists());
    assert_eq!(responses(&w.take_output().to_server), [finished(2, 4, 0)]);
    assert_eq!(w.stored_objects(), 1);
}

fn js_task_frame(id: i32, ty: &str, inputs: &[i32], n_cpus: i32) -> Vec<u8> {
    task(id, ty, format!("cfg{id}").as_bytes(), inputs, n_cpus)
}

#[test]
fn js_tasks_respect_cpu_slots() {
    let mut w = worker("slots", 2);
    let mut b = js_task_frame(1, "loom/run/run", &[], 1);
    b.extend(js_task_frame(2, "loom/run/run", &[], 2)); // blocks the head of the queue
    b.extend(js_task_frame(3, "loom/js/call", &[], 1));
    b.extend(js_task_frame(4, "loom/js/value", &[], 0)); // runs at once
    b.extend(js_task_frame(5, "loom/run/run", &[], 3)); // more than the worker has
    w.on_server_data(&b).unwrap();
    let out = w.take_output();
    let started: Vec<_> = out
        .js_tasks
        .iter()
        .map(|t| (t.id, t.cpu_slots.clone()))
        .collect();
    assert_eq!(started, [(1, vec![1]), (4, vec![])]);
    assert_eq!(out.js_tasks[0].task_type, "loom/run/run");
    assert_eq!(out.js_tasks[0].config, b"cfg1");
    assert_eq!(out.js_tasks[0].n_cpus, 1);
    assert!(out.to_server.is_empty());
    w.finish_js_task(4, JsResult::JsObj(b"{}".to_vec()));
    let out = w.take_output();
    assert!(out.js_tasks.is_empty());
    assert_eq!(responses(&out.to_server), [finished(4, 2, 0)]);
    assert_eq!(w.store[&4].type_name(), "loom/js/obj");
    w.fail_task(1, b"Program terminated with status 2\nStderr:\n");
    let out = w.take_output();
    assert_eq!(
        responses(&out.to_server),
        [failed(1, "Program terminated with status 2\nStderr:\n")]
    );
    let started: Vec<_> = out
        .js_tasks
        .iter()
        .map(|t| (t.id, t.cpu_slots.clone()))
        .collect();
    assert_eq!(started, [(2, vec![0, 1])]);
    w.finish_js_task(2, JsResult::Array(vec![]));
    let out = w.take_output();
    // Task 3 starts; task 5, now at the head, can never fit and fails.
    assert_eq!(
        responses(&out.to_server),
        [
            finished(2, 0, 0),
            failed(5, "Task needs 3 cpus but this worker has only 2")
        ]
    );
    assert_eq!(out.js_tasks.len(), 1);
    assert_eq!(
        (out.js_tasks[0].id, out.js_tasks[0].cpu_slots.as_slice()),
        (3, &[1][..])
    );
    w.finish_js_task(3, JsResult::Plain(vec![]));
    let out = w.take_output();
    assert_eq!(responses(&out.to_server), [finished(3, 0, 0)]);
    // Unknown ids are logged, not answered.
    w.finish_js_task(3, JsResult::Plain(vec![]));
    w.fail_task(99, b"x");
    let out = w.take_output();
    assert!(out.to_server.is_empty());
    assert_eq!(out.logs.len(), 2);
}

/// (id, cpu slots, pooled) of the JS tasks handed out.
fn handed(out: &WorkerOutput) -> Vec<(i32, Vec<u32>, bool)> {
    out.js_tasks
        .iter()
        .map(|t| (t.id, t.cpu_slots.clone(), t.pooled))
        .collect()
}

#[test]
fn function_calls_share_the_slots_lent_to_the_pool() {
    let mut w = worker("pool", 2);
    let mut b = js_task_frame(1, "loom/run/run", &[], 1);
    for id in 2..=5 {
        b.extend(js_task_frame(id, "loom/js/call", &[], 1));
    }
    b.extend(js_task_frame(6, "loom/run/run", &[], 1));
    w.on_server_data(&b).unwrap();
    let out = w.take_output();
    // Call 2 lends the last free slot to the pool; calls 3-5 join it; the program waits.
    assert_eq!(
        handed(&out),
        [
            (1, vec![1], false),
            (2, vec![0], true),
            (3, vec![], true),
            (4, vec![], true),
            (5, vec![], true)
        ]
    );
    assert_eq!(out.js_pool_cpus, 1);
    // A freed slot goes to the pool first: its calls were handed out before the program.
    w.finish_js_task(1, JsResult::Plain(vec![]));
    let out = w.take_output();
    assert!(out.js_tasks.is_empty());
    assert_eq!(out.js_pool_cpus, 2);
    w.finish_js_task(2, JsResult::Plain(b"2".to_vec()));
    w.finish_js_task(3, JsResult::Plain(b"3".to_vec()));
    let out = w.take_output();
    assert_eq!(
        responses(&out.to_server),
        [finished(2, 1, 0), finished(3, 1, 0)]
    );
    assert!(out.js_tasks.is_empty());
    assert_eq!(out.js_pool_cpus, 2);
    // Fewer calls than lent slots: one goes back, and the program takes it.
    w.finish_js_task(4, JsResult::Plain(b"4".to_vec()));
    let out = w.take_output();
    assert_eq!(handed(&out), [(6, vec![1], false)]);
    assert_eq!(out.js_pool_cpus, 1);
    // A canceled call leaves the pool; its slot goes back.
    w.cancel(5);
    let out = w.take_output();
    assert_eq!(out.canceled, [5]);
    assert_eq!(out.js_pool_cpus, 0);
    // A pooled call redirected to a program: the program gets a slot of its own.
    w.on_server_data(&js_task_frame(7, "loom/js/call", &[], 1))
        .unwrap();
    assert_eq!(handed(&w.take_output()), [(7, vec![0], true)]);
    w.redirect_task(7, "loom/run/run", b"cfg", vec![]);
    let out = w.take_output();
    assert_eq!(handed(&out), [(7, vec![0], false)]);
    assert_eq!(out.js_pool_cpus, 0);
    w.finish_js_task(6, JsResult::Plain(vec![]));
    w.finish_js_task(7, JsResult::Plain(vec![]));
    assert!(!w.take_output().to_server.is_empty());
    // Both slots are free again: a two-cpu task starts at once.
    w.on_server_data(&js_task_frame(8, "loom/run/run", &[], 2))
        .unwrap();
    assert_eq!(handed(&w.take_output()), [(8, vec![1, 0], false)]);
}

#[test]
fn js_results_and_inputs() {
    let mut w = worker("jsresults", 1);
    let big = vec![b'y'; SPILL_LIMIT + 5];
    let mut b = task(0, "loom/data/const", b"small", &[], 0);
    b.extend(task(1, "loom/data/const", &big, &[], 0));
    b.extend(task(2, "loom/data/const", b"a\nb", &[], 0));
    b.extend(task(3, "loom/data/split", b"", &[2], 0));
    b.extend(task(4, "loom/array/make", b"", &[0], 0));
    b.extend(js_task_frame(10, "loom/js/call", &[0, 1, 3, 4], 0));
    w.on_server_data(&b).unwrap();
    let out = w.take_output();
    let t = &out.js_tasks[0];
    assert_eq!(
        t.inputs[0],
        JsInput {
            type_name: "loom/data".into(),
            size: 5,
            length: 0,
            bytes: Some(b"small".to_vec()),
            path: None
        }
    );
    assert_eq!(
        t.inputs[1].path.as_deref(),
        w.store[&1].file_path().and_then(|p| p.to_str())
    );
    assert_eq!(
        (t.inputs[2].type_name.as_str(), t.inputs[2].length),
        ("loom/index", 2)
    );
    let mut frames = Vec::new();
    encode_frames(&w.store[&3], &w.ids, &mut frames);
    assert_eq!(t.inputs[2].bytes.as_ref(), Some(&frames));
    assert_eq!(
        (t.inputs[3].type_name.as_str(), t.inputs[3].size),
        ("loom/array", 5)
    );
    // A run output file is moved into the data dir; inputs pass through; arrays nest.
    let run_dir = tmp("jsresults-run");
    let outf = run_dir.join("+out");
    std::fs::write(&outf, b"stdout").unwrap();
    w.finish_js_task(
        10,
        JsResult::Array(vec![
            JsResult::PlainFile(outf.clone()),
            JsResult::Input(1),
            JsResult::Input(0),
        ]),
    );
    assert!(!outf.exists());
    let out = w.take_output();
    assert_eq!(
        responses(&out.to_server),
        [finished(10, 6 + big.len() as u64 + 5, 3)]
    );
    let r = w.store[&10].clone();
    let p = r.get(0).unwrap().file_path().unwrap().to_owned();
    assert!(p.starts_with(w.data_dir()));
    assert!(same(&r.get(1).unwrap(), &w.store[&1]));
    // Bad results fail the task.
    w.on_server_data(&js_task_frame(11, "loom/run/run", &[], 1))
        .unwrap();
    w.finish_js_task(11, JsResult::PlainFile(run_dir.join("xxx")));
    w.on_server_data(&js_task_frame(12, "loom/run/run", &[], 1))
        .unwrap();
    w.finish_js_task(12, JsResult::Input(0));
    let out = w.take_output();
    assert_eq!(
        responses(&out.to_server),
        [
            failed(11, "Output 'xxx' error: No such file or directory"),
            failed(
                12,
                "the result refers to input #0 but the task has 0 inputs"
            ),
        ]
    );
    drop(r);
    run(&mut w, &simple(worker_command::Type::Remove, 10, None));
    assert!(!p.exists());
}

#[test]
fn python_tasks_go_to_js_and_return_pyobjs_and_items() {
    let mut w = worker("python", 2);
    let mut b = task(0, "loom/py/value", b"pickled-fn", &[], 1);
    b.extend(task(1, "loom/data/const", b"a\nbb\nc", &[], 0));
    b.extend(task(2, "loom/data/split", b"", &[1], 0));
    b.extend(task(3, "loom/array/make", b"", &[1, 2], 0));
    w.on_server_data(&b).unwrap();
    let out = w.take_output();
    assert_eq!(out.js_tasks.len(), 1);
    assert_eq!(
        (out.js_tasks[0].task_type.as_str(), out.js_tasks[0].n_cpus),
        ("loom/py/value", 1)
    );
    w.finish_js_task(0, JsResult::PyObj(b"pickled-fn".to_vec()));
    let out = w.take_output();
    assert_eq!(responses(&out.to_server)[0], finished(0, 10, 0));
    assert_eq!(w.store[&0].type_name(), "loom/pyobj");
    // The pyobj is handed to the call as its bytes; results may be items inside inputs.
    w.on_server_data(&task(4, "loom/py/call", b"", &[0, 3], 1))
        .unwrap();
    let out = w.take_output();
    let t = &out.js_tasks[0];
    assert_eq!(t.inputs[0].type_name, "loom/pyobj");
    assert_eq!(t.inputs[0].bytes.as_deref(), Some(&b"pickled-fn"[..]));
    w.finish_js_task(
        4,
        JsResult::Array(vec![
            JsResult::Item(1, vec![0]),
            JsResult::Item(1, vec![1, 2]),
            JsResult::PyObj(b"x".to_vec()),
        ]),
    );
    let r = w.store[&4].clone();
    assert!(same(&r.get(0).unwrap(), &w.store[&1]));
    assert_eq!(r.get(1).unwrap().bytes(), Some(&b"c"[..]));
    assert_eq!(r.get(2).unwrap().type_name(), "loom/pyobj");
    // A path out of range fails the task; so does a redirection input out of range.
    w.on_server_data(&task(5, "loom/py/call", b"", &[0, 3], 1))
        .unwrap();
    w.finish_js_task(5, JsResult::Item(1, vec![7]));
    w.on_server_data(&task(6, "loom/py/call", b"", &[0, 3], 1))
        .unwrap();
    w.redirect_task(
        6,
        "loom/data/merge",
        b"",
        vec![
            RedirectInput::Item(1, vec![1, 0]),
            RedirectInput::Item(1, vec![1, 1]),
        ],
    );
    w.on_server_data(&task(7, "loom/py/call", b"", &[0, 3], 1))
        .unwrap();
    w.redirect_task(
        7,
        "loom/data/merge",
        b"",
        vec![RedirectInput::Item(1, vec![5])],
    );
    let out = w.take_output();
    assert_eq!(
        responses(&out.to_server)[1..],
        [
            failed(5, "item 7 of Array is out of range (length=2)"),
            finished(6, 5, 0),
            failed(
                7,
                "task redirection: item 5 of Array is out of range (length=2)"
            ),
        ]
    );
    assert_eq!(w.store[&6].bytes(), Some(&b"a\nbb\n"[..]));
    // Large files inside array and index inputs of a Python call travel by path.
    let big = vec![b'z'; SPILL_LIMIT + 1];
    let mut b = task(10, "loom/data/const", &big, &[], 0);
    b.extend(task(11, "loom/data/split", b"", &[10], 0));
    b.extend(task(12, "loom/array/make", b"", &[10, 1], 0));
    b.extend(task(13, "loom/py/call", b"", &[0, 11, 12], 1));
    b.extend(task(14, "loom/js/call", b"", &[12], 1));
    w.on_server_data(&b).unwrap();
    let out = w.take_output();
    let path = w.store[&10]
        .file_path()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let mut expect_index = Vec::new();
    push_raw_frame(
        &mut expect_index,
        &[&(-2i32).to_le_bytes()[..], &u64s(&[0, big.len() as u64])].concat(),
    );
    push_raw_frame(&mut expect_index, path.as_bytes());
    assert_eq!(
        out.js_tasks[0].inputs[1].bytes.as_ref(),
        Some(&expect_index)
    );
    let mut expect_array = Vec::new();
    push_raw_frame(
        &mut expect_array,
        &[(-2i32).to_le_bytes(), w.ids.data.to_le_bytes()].concat(),
    );
    push_raw_frame(&mut expect_array, path.as_bytes());
    push_raw_frame(&mut expect_array, b"a\nbb\nc");
    assert_eq!(
        out.js_tasks[0].inputs[2].bytes.as_ref(),
        Some(&expect_array)
    );
    // JS calls get the bytes, as fetched data.
    let mut frames = Vec::new();
    encode_frames(&w.store[&12], &w.ids, &mut frames);
    assert_eq!(out.js_tasks[1].inputs[0].bytes.as_ref(), Some(&frames));
}

/// Announce + streams of `objs` (by id) from another worker `src`.
fn stream_from(src: &Worker, ids: &[i32]) -> Vec<u8> {
    let mut b = Vec::new();
    push_frame(
        &mut b,
        &Announce {
            port: 4321,
            ..Default::default()
        },
    );
    for id in ids {
        encode_stream(*id, &src.store[id], &src.ids, &mut b);
    }
    b
}

#[test]
fn peer_stream_in_one_byte_chunks_wakes_waiting_tasks() {
    let mut src = worker("peer-src", 1);
    let big: Vec<u8> = (0..SPILL_LIMIT as u32 + 100)
        .map(|i| (i % 251) as u8)
        .collect();
    let mut b = task(100, "loom/data/const", &big, &[], 0);
    b.extend(task(101, "loom/data/const", b"x\ny\n\nz", &[], 0));
    b.extend(task(102, "loom/data/split", b"", &[101], 0));
    b.extend(task(103, "loom/array/make", b"", &[101, 102], 0));
    run(&mut src, &b);
    let stream = stream_from(&src, &[100, 102, 103]);

    let mut w = worker("peer-dst", 1);
    // Tasks arrive before their inputs.
    let mut b = task(1, "loom/data/merge", b"|", &[100, 100], 0);
    b.extend(task(2, "loom/base/get", &u64s(&[3]), &[102], 0));
    b.extend(task(3, "loom/base/length", b"", &[103, 102, 1], 0));
    assert!(run(&mut w, &b).is_empty());
    let mut resp = Vec::new();
    for byte in stream.chunks(1) {
        w.on_peer_data(7, byte).unwrap();
        resp.extend(responses(&w.take_output().to_server));
    }
    let transfered = |id| WorkerResponse {
        r#type: worker_response::Type::Transfered as i32,
        id,
        ..Default::default()
    };
    assert_eq!(
        resp,
        [
            transfered(100),
            finished(1, 2 * big.len() as u64 + 1, 0),
            transfered(102),
            finished(2, 1, 0),
            transfered(103),
            finished(3, 8, 0),
        ]
    );
    let got = w.store[&100].clone();
    assert_eq!(got.bytes().unwrap(), &big[..]);
    let spill = got.file_path().unwrap().to_owned();
    assert!(spill.starts_with(w.data_dir()));
    assert_eq!(plain_of(&w, 2), b"z");
    assert_eq!(plain_of(&w, 3), 6u64.to_le_bytes());
    assert_eq!(w.store[&103].get(1).unwrap().length(), 4);
    // Re-encoding what was received gives the sender's bytes.
    let mut again = Vec::new();
    push_frame(
        &mut again,
        &Announce {
            port: 4321,
            ..Default::default()
        },
    );
    for id in [100, 102, 103] {
        encode_stream(id, &w.store[&id], &w.ids, &mut again);
    }
    assert_eq!(again, stream);
    drop(got);
    run(&mut w, &simple(worker_command::Type::Remove, 100, None));
    assert!(!spill.exists());

    // A connection we opened (no Announce from the other side), whole chunk at once.
    let mut w2 = worker("peer-dst2", 1);
    w2.on_peer_data(1, &stream[stream_from(&src, &[]).len()..])
        .unwrap();
    assert_eq!(responses(&w2.take_output().to_server).len(), 3);
}

#[test]
fn broken_and_interrupted_peer_streams() {
    let mut src = worker("broken-src", 1);
    run(
        &mut src,
        &task(5, "loom/data/const", &vec![1u8; SPILL_LIMIT * 2], &[], 0),
    );
    let stream = stream_from(&src, &[5]);
    let mut w = worker("broken-dst", 1);
    // Closed half way through a spilled frame: the partial file is deleted.
    w.on_peer_data(3, &stream[..stream.len() / 2]).unwrap();
    let dir = w.data_dir().to_owned();
    let files = || std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files(), 1);
    w.on_peer_close(3);
    assert_eq!(files(), 0);
    let out = w.take_output();
    assert!(out.to_server.is_empty());
    assert_eq!(out.logs.len(), 1);
    // Garbage after the Announce is an error for that connection only.
    let mut bad = Vec::new();
    push_frame(
        &mut bad,
        &Announce {
            port: 1,
            ..Default::default()
        },
    );
    push_raw_frame(&mut bad, &[0xff, 0xff]);
    assert!(w.on_peer_data(4, &bad).is_err());
    w.on_peer_close(4);
    w.on_peer_data(5, &stream).unwrap();
    assert_eq!(w.stored_objects(), 1);
}

#[test]
fn checkpoints_are_written_and_loaded() {
    let mut w = worker("checkpoint", 1);
    let dir = tmp("checkpoint-files");
    let cp = dir.join("cp1");
    let mut t = WorkerCommand::decode(&task(1, "loom/data/const", b"[1]", &[], 0)[8..]).unwrap();
    t.checkpoint_path = Some(cp.to_str().unwrap().to_owned());
    let mut b = Vec::new();
    push_frame(&mut b, &t);
    let r = run(&mut w, &b);
    assert_eq!(
        r[0].r#type,
        worker_response::Type::FinishedAndCheckpointing as i32
    );
    assert_eq!((r[0].size, r[0].length), (Some(3), Some(0)));
    assert_eq!(r[1].r#type, worker_response::Type::CheckpointWritten as i32);
    assert_eq!(std::fs::read(&cp).unwrap(), b"[1]");
    assert!(!dir.join("cp1.loom.tmp").exists());
    let mut l = WorkerCommand {
        r#type: worker_command::Type::LoadCheckpoint as i32,
        id: Some(9),
        checkpoint_path: Some(cp.to_str().unwrap().to_owned()),
        ..Default::default()
    };
    let mut b = Vec::new();
    push_frame(&mut b, &l);
    l.id = Some(10);
    l.checkpoint_path = Some("/nonexistent/x".into());
    push_frame(&mut b, &l);
    let r = run(&mut w, &b);
    assert_eq!(r[0].r#type, worker_response::Type::CheckpointLoaded as i32);
    assert_eq!((r[0].id, r[0].size), (9, Some(3)));
    assert_eq!(
        r[1].r#type,
        worker_response::Type::CheckpointLoadFailed as i32
    );
    assert_eq!(
        r[1].error_msg.as_deref(),
        Some(&b"File '/nonexistent/x' does not exists"[..])
    );
}

/// 1.5M trivial tasks (1M const + 0.5M merge) fed in 64 KiB chunks; prints the best of 5 rounds
/// per task (run with `--release -- --ignored --nocapture`).
#[test]
#[ignore]
fn bench_trivial_tasks() {
    let n = 1_000_000;
    let mut b = Vec::new();
    for i in 0..n {
        b.extend(task(i, "loom/data/const", b"abc", &[], 0));
    }
    for i in 0..n / 2 {
        b.extend(task(n + i, "loom/data/merge", b"", &[2 * i, 2 * i + 1], 0));
    }
    let mut rm = Vec::new();
    for i in 0..n + n / 2 {
        rm.extend(simple(worker_command::Type::Remove, i, None));
    }
    let (mut best, mut best_rm) = (f64::MAX, f64::MAX);
    for round in 0..5 {
        let mut w = worker(&format!("bench{round}"), 1);
        let t = Instant::now();
        for chunk in b.chunks(64 * 1024) {
            w.on_server_data(chunk).unwrap();
            std::hint::black_box(w.take_output());
        }
        best = best.min(t.elapsed().as_nanos() as f64 / (n + n / 2) as f64);
        let t = Instant::now();
        w.on_server_data(&rm).unwrap();
        best_rm = best_rm.min(t.elapsed().as_nanos() as f64 / (n + n / 2) as f64);
        assert_eq!(w.stored_objects(), 0);
    }
    eprintln!("tasks: {best:.0} ns/task; removes: {best_rm:.0} ns each");
}

#[test]
fn trace_records_tasks_and_transfers() {
    let dir = std::env::temp_dir().join(format!("loom-worker-trace-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = worker("trace", 2);
    let mut b = Vec::new();
    push_frame(
        &mut b,
        &WorkerCommand {
            r#type: worker_command::Type::Update as i32,
            trace_path: Some(dir.to_string_lossy().into_owned()),
            worker_id: Some(4),
            ..Default::default()
        },
    );
    b.extend(task(1, "loom/data/const", b"AB", &[], 0));
    b.extend(task(2, "loom/data/const", b"CD", &[], 0));
    b.extend(task(3, "loom/data/merge", b"", &[1, 2], 0));
    b.extend(task(4, "loom/base/get", &0u64.to_le_bytes(), &[3], 0));
    b.extend(simple(worker_command::Type::Send, 3, Some("10.0.0.2:4000")));
    w.on_server_data(&b).unwrap();
    w.take_output();
    // An object arrives from a peer that announced data port 4321.
    let mut stream = Vec::new();
    push_frame(
        &mut stream,
        &Announce {
            port: 4321,
            ..Default::default()
        },
    );
    let announce_len = stream.len();
    push_frame(
        &mut stream,
        &DataHeader {
            id: 9,
            n_messages: 1,
            type_id: 19,
        },
    );
    push_raw_frame(&mut stream, b"hello");
    w.on_peer_data(1, &stream).unwrap();
    w.trace_tick();
    w.trace_flush();
    let path = dir.join("worker-4.trace");
    assert_eq!(w.trace_file(), Some(path.as_path()));
    let text = std::fs::read_to_string(&path).unwrap();
    let recs: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(&recs[0][..3], &["HYPERLOOM-TRACE", "1", "worker"]);
    assert_eq!(&recs[0][4..], &["4", "2", "1234"]);
    let of = |tag: &str| -> Vec<String> {
        recs.iter()
            .filter(|r| r[0] == tag)
            .map(|r| r[2..].join(" "))
            .collect()
    };
    assert_eq!(of("S"), vec!["1 -1", "2 -1", "3 -1", "4 -1"]);
    assert_eq!(of("F"), vec!["1 2", "2 2", "3 4"]);
    assert_eq!(of("X"), vec!["4"]); // get on plain data fails
    let d = of("D");
    assert_eq!(d.len(), 1);
    assert!(
        d[0].starts_with("3 ") && d[0].ends_with(" 10.0.0.2:4000"),
        "{d:?}"
    );
    let r = of("R");
    assert_eq!(r.len(), 1);
    let r: Vec<&str> = r[0].split(' ').collect();
    let bytes = (stream.len() - announce_len).to_string();
    assert_eq!(&r[..3], &["9", bytes.as_str(), "4321"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_connection_this_worker_opened_starts_with_its_announce_and_takes_data_back_without_one() {
    let mut src = worker("open-peer-src", 1);
    run(&mut src, &task(100, "loom/data/const", b"back", &[], 0));
    let mut w = worker("open-peer-dst", 1);
    let frame = w.open_peer(9, 4321);
    let mut r = FrameReader::new(u64::MAX);
    let mut announces = Vec::new();
    r.feed::<FrameError>(&frame, |f| {
        announces.push(Announce::decode(f).unwrap().port);
        Ok(())
    })
    .unwrap();
    assert_eq!(announces, vec![1234], "our own data port");
    // The peer answers on the same connection, without announcing itself.
    let mut stream = Vec::new();
    encode_stream(100, &src.store[&100], &src.ids, &mut stream);
    w.on_peer_data(9, &stream).unwrap();
    let out = w.take_output();
    assert_eq!(
        responses(&out.to_server)[0].r#type,
        worker_response::Type::Transfered as i32
    );
    assert_eq!(plain_of(&w, 100), b"back");
}

/// A worker of a server that announced `features` (on its registration DICTIONARY).
fn worker_of_server(name: &str, features: &[&str]) -> Worker {
    let mut w = worker(name, 1);
    let mut b = Vec::new();
    push_frame(
        &mut b,
        &WorkerCommand {
            r#type: worker_command::Type::Dictionary as i32,
            symbols: Symbols::for_server().names().to_vec(),
            server_features: features.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    );
    w.on_server_data(&b).unwrap();
    w
}

#[test]
fn trace_marked_records_only_the_tracing_clients_tasks() {
    let dir = std::env::temp_dir().join(format!("loom-worker-marked-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = worker_of_server("marked", &["trace-marked"]);
    let mut b = Vec::new();
    push_frame(
        &mut b,
        &WorkerCommand {
            r#type: worker_command::Type::Update as i32,
            trace_path: Some(dir.to_string_lossy().into_owned()),
            worker_id: Some(7),
            ..Default::default()
        },
    );
    // Task 1 is the tracing client's (marked, as the server appends the field), task 2 another's.
    let mut marked = task(1, "loom/data/const", b"AB", &[], 0);
    marked.extend_from_slice(&[0xd0, 0x07, 0x01]);
    let len = (marked.len() - 8) as u64;
    marked[..8].copy_from_slice(&len.to_le_bytes());
    b.extend(marked);
    b.extend(task(2, "loom/data/const", b"CD", &[], 0));
    b.extend(simple(worker_command::Type::Send, 1, Some("10.0.0.2:4000")));
    b.extend(simple(worker_command::Type::Send, 2, Some("10.0.0.2:4000")));
    w.on_server_data(&b).unwrap();
    w.take_output();
    w.trace_flush();
    let text = std::fs::read_to_string(dir.join("worker-7.trace")).unwrap();
    let ids: Vec<&str> = text
        .lines()
        .skip(1)
        .filter(|l| "SFXD".contains(&l[..1]))
        .map(|l| l.split(' ').nth(2).unwrap())
        .collect();
    assert_eq!(ids, ["1", "1", "1"], "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn leaving_frame_only_for_a_server_that_announced_it() {
    assert!(worker("no-leaving", 1).leaving_frame().is_none());
    let w = worker_of_server("leaving", &["leaving"]);
    let f = w.leaving_frame().unwrap();
    let r = WorkerResponse::decode(&f[8..]).unwrap();
    assert_eq!(r.r#type, worker_response::Type::Leaving as i32);
}

/// A peer told to SEND to a worker that just registered may connect before the worker has its
/// DICTIONARY (the server's answer on another socket): the data is held until then, not refused
/// as "data of unknown type id" (which lost the transfer and hung its dependants: chaos seed
/// 2026 round 378, #18).
#[test]
fn peer_data_before_the_dictionary_is_held_until_it_arrives() {
    let mut src = worker("early-src", 1);
    let mut b = task(10, "loom/data/const", b"x\ny\n", &[], 0);
    b.extend(task(11, "loom/data/split", b"", &[10], 0));
    run(&mut src, &b);
    let stream = stream_from(&src, &[10, 11]);

    let mut w = Worker::new(WorkerConfig {
        work_dir: tmp("early-dst"),
        cpus: 1,
        data_port: 1234,
        extra_task_types: vec![],
        extensions: vec![],
    })
    .unwrap();
    // The whole stream, then its close, before the dictionary.
    w.on_peer_data(2, &stream[..stream.len() / 2]).unwrap();
    w.on_peer_data(2, &stream[stream.len() / 2..]).unwrap();
    w.on_peer_close(2);
    assert_eq!(w.stored_objects(), 0);
    let mut d = Vec::new();
    push_frame(
        &mut d,
        &WorkerCommand {
            r#type: worker_command::Type::Dictionary as i32,
            symbols: Symbols::for_server().names().to_vec(),
            ..Default::default()
        },
    );
    w.on_server_data(&d).unwrap();
    let out = w.take_output();
    assert!(
        out.logs.iter().all(|(l, _)| *l != LogLevel::Error),
        "{:?}",
        out.logs
    );
    assert_eq!(w.stored_objects(), 2);
    assert_eq!(responses(&out.to_server).len(), 2);
    // Later connections are read at once.
    w.on_peer_data(3, &stream).unwrap();
    assert_eq!(responses(&w.take_output().to_server).len(), 2);
}

#[test]
fn direct_object_is_the_data_file_or_the_peer_stream_and_keeps_the_file_while_held() {
    use super::DirectObject;
    let mut w = worker("direct", 1);
    let big = vec![b'x'; SPILL_LIMIT + 1];
    run(&mut w, &task(1, "loom/data/const", &big, &[], 0));
    run(&mut w, &task(2, "loom/data/const", b"small", &[], 0));
    let path = w.store[&1].file_path().unwrap().to_owned();
    // Same host: the spilled object's file, held by the returned reference.
    let Some(DirectObject::File { obj, path: p, size }) = w.direct_object(1, true) else {
        panic!("a spilled object on this host is its file");
    };
    assert_eq!((p.as_path(), size), (path.as_path(), big.len() as u64));
    // Elsewhere, or an object in memory: the stream a peer would get.
    for (id, file) in [(1, false), (2, true)] {
        let Some(DirectObject::Stream(parts)) = w.direct_object(id, file) else {
            panic!("object {id}: a stream");
        };
        let bytes: Vec<u8> = parts.iter().flat_map(|p| p.as_slice().to_vec()).collect();
        w.resend(id, "peer");
        let peer = w.take_output().sends.remove(0).to_vec();
        assert_eq!(bytes, peer, "object {id}: the peer's stream");
    }
    // Released by the server: the file stays while the direct fetch holds it, then goes.
    w.on_server_data(&simple(worker_command::Type::Remove, 1, None))
        .unwrap();
    assert!(path.exists());
    assert!(w.direct_object(1, true).is_none(), "no longer held here");
    drop(obj);
    assert!(!path.exists());
}

/// `peer-link`: the sender's Announce offering it is still an Announce (skipped, its port kept);
/// a peer's data file hard-linked into the receiver's data directory is stored as if streamed
/// (TRANSFERED, the waiting task runs on the bytes) and outlives the sender's copy; REMOVE deletes
/// the receiver's link.
#[test]
fn peer_link_offer_is_an_announce_and_a_linked_file_is_adopted() {
    let mut src = worker("plink-src", 1);
    let big: Vec<u8> = (0..SPILL_LIMIT as u32 * 4)
        .map(|i| (i % 249) as u8)
        .collect();
    run(&mut src, &task(100, "loom/data/const", &big, &[], 0));
    run(&mut src, &task(101, "loom/data/const", b"small", &[], 0));
    let src_file = src.store[&100].file_path().unwrap().to_owned();

    let mut w = worker("plink-dst", 1);
    assert!(run(&mut w, &task(1, "loom/data/merge", b"", &[100, 101], 0)).is_empty());
    // The offering Announce, then a stream of the small object on the same connection.
    let mut b = src.open_peer_offering(9, 1234, "boot:1000");
    let announce = Announce::decode(&b[8..]).unwrap();
    assert_eq!(announce.host.as_deref(), Some("boot:1000"));
    assert_eq!(announce.features, ["peer-link"]);
    assert!(super::peer::is_announce(&b[8..]));
    encode_stream(101, &src.store[&101], &src.ids, &mut b);
    w.on_peer_data(7, &b).unwrap();
    assert_eq!(
        responses(&w.take_output().to_server),
        [WorkerResponse {
            r#type: worker_response::Type::Transfered as i32,
            id: 101,
            ..Default::default()
        }]
    );
    // The large one arrives as a link to the sender's file.
    let linked = w.data_dir().join("peer-test-1");
    std::fs::hard_link(&src_file, &linked).unwrap();
    w.adopt_received(100, linked.clone(), 1234).unwrap();
    let resp = responses(&w.take_output().to_server);
    assert_eq!(resp[0].id, 100);
    assert_eq!(resp[0].r#type, worker_response::Type::Transfered as i32);
    assert_eq!(resp[1], finished(1, big.len() as u64 + 5, 0));
    // The sender lets its copy go: the receiver's stays.
    src.store.remove(&100);
    assert!(!src_file.exists());
    assert_eq!(plain_of(&w, 100), big);
    let mut merged = big.clone();
    merged.extend_from_slice(b"small");
    assert_eq!(plain_of(&w, 1), merged);
    run(&mut w, &simple(worker_command::Type::Remove, 100, None));
    assert!(!linked.exists(), "the receiver's link goes with the object");
}

/// A DataHeader (fields 1, 2, 3) is never taken for an Announce, with or without our fields.
#[test]
fn data_header_is_not_an_announce() {
    let mut b = Vec::new();
    push_frame(
        &mut b,
        &DataHeader {
            id: 5,
            n_messages: 1,
            type_id: 2,
        },
    );
    assert!(!super::peer::is_announce(&b[8..]));
    let mut a = Vec::new();
    push_frame(
        &mut a,
        &Announce {
            port: 70000,
            ..Default::default()
        },
    );
    assert!(super::peer::is_announce(&a[8..]));
}

/// A linked file that cannot be mapped (gone) is an error: nothing stored, nothing reported.
#[test]
fn peer_link_adopt_of_a_missing_file_stores_nothing() {
    let mut w = worker("plink-missing", 1);
    let path = w.data_dir().join("peer-missing");
    let err = w.adopt_received(3, path.clone(), 0).unwrap_err();
    assert!(err.contains("data id=3"), "{err}");
    assert!(!w.store.contains_key(&3));
    assert!(responses(&w.take_output().to_server).is_empty());
    assert!(!path.exists());
}
