use super::stream::{
    encode_stream, encode_stream_parts, encoded_len, n_frames, scan_header, NextFrame,
    StreamDecoder,
};
use super::*;
use crate::frame::{FrameError, FrameReader};

/// Original ids (spec 3.2), with loom/js/obj at 20 as in our server dictionary.
pub(crate) fn ids() -> TypeIds {
    TypeIds::from_symbols(&Symbols::for_server())
}

pub(crate) fn tmp_dir(name: &str) -> DataDir {
    let p = std::env::temp_dir().join(format!("loom-data-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    DataDir::new(p)
}

fn plain(b: &[u8]) -> DataRef {
    DataRef::new(DataObject::Plain(Plain::from_vec(b.to_vec())))
}

fn arr(items: Vec<DataRef>) -> DataRef {
    DataRef::new(DataObject::Array(Array::new(items)))
}

fn frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut r = FrameReader::new(u64::MAX);
    let mut out = Vec::new();
    r.feed::<FrameError>(bytes, |f| {
        out.push(f.to_vec());
        Ok(())
    })
    .unwrap();
    assert_eq!(r.pending_bytes(), 0);
    out
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '|')
        .collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn decode_all(bytes: &[u8], dd: &DataDir) -> Vec<Decoded> {
    let mut dec = StreamDecoder::new();
    let mut got = Vec::new();
    for f in frames(bytes) {
        if let Some(d) = dec.feed(&f, &ids(), dd).unwrap() {
            got.push(d);
        }
    }
    assert!(!dec.in_progress());
    got
}

use super::stream::Decoded;

#[test]
fn tiny_plain_data_is_inline_without_growing_objects() {
    assert!(std::mem::size_of::<DataObject>() <= 56);
    for n in [0, 1, plain::INLINE_LEN, plain::INLINE_LEN + 1, 1000] {
        let v: Vec<u8> = (0..n).map(|i| i as u8).collect();
        assert_eq!(Plain::from_vec(v.clone()).bytes(), &v[..]);
        assert_eq!(Plain::from_slice(&v).len(), n);
    }
}

#[test]
fn type_ids_follow_the_dictionary() {
    let t = ids();
    assert_eq!(
        (t.pyobj, t.index, t.array, t.data, t.jsobj),
        (16, 17, 18, 19, 20)
    );
    assert_eq!(TypeIds::from_symbols(&Symbols::new()), TypeIds::default());
}

#[test]
fn plain_size_length_and_encoding() {
    let p = plain(b"ABCDE123");
    assert_eq!((p.size(), p.length(), p.type_name()), (8, 0, "loom/data"));
    assert_eq!(p.info(), "RawData file=");
    let mut out = Vec::new();
    encode_stream(2, &p, &ids(), &mut out);
    assert_eq!(out.len(), encoded_len(2, &p, &ids()));
    let f = frames(&out);
    assert_eq!(f.len(), 2);
    // DataHeader{id=2, n_messages=1, type_id=19}
    assert_eq!(f[0], hex("0802 1001 1813"));
    assert_eq!(f[1], b"ABCDE123");
}

#[test]
fn empty_plain_is_one_empty_frame() {
    let p = plain(b"");
    let mut out = Vec::new();
    encode_stream(0, &p, &ids(), &mut out);
    assert_eq!(&out[out.len() - 8..], &[0u8; 8]);
    assert_eq!(n_frames(&p), 1);
}

#[test]
fn split_matches_the_observed_stream() {
    let base = plain(b"x\ny\n\nz");
    let idx = DataRef::new(DataObject::Index(
        Index::split_lines(base.to_shared()).unwrap(),
    ));
    assert_eq!(idx.length(), 4);
    assert_eq!(idx.size(), 6 + 8 * 5);
    let mut out = Vec::new();
    encode_stream(7, &idx, &ids(), &mut out);
    let f = frames(&out);
    assert_eq!(f.len(), 3);
    assert_eq!(f[0], hex("0807 1002 1811"));
    assert_eq!(
        f[1],
        hex("13000000 | 0000000000000000 0200000000000000 0400000000000000 0500000000000000 0600000000000000")
    );
    assert_eq!(f[2], b"x\ny\n\nz");
    let pieces: Vec<_> = (0..4)
        .map(|i| idx.get(i).unwrap().bytes().unwrap().to_vec())
        .collect();
    assert_eq!(pieces, [&b"x\n"[..], b"y\n", b"\n", b"z"]);
    assert!(idx.get(4).is_none());
}

#[test]
fn split_edge_cases() {
    let lines = |s: &[u8]| {
        let i = Index::split_lines(plain(s).to_shared()).unwrap();
        (0..i.len())
            .map(|k| i.piece(k).to_vec())
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(b"E\n\n"), [&b"E\n"[..], b"\n"]);
    assert_eq!(
        lines(b"AAA\nBBB\n\nC\nDDDDDDDDDDD\nEEE"),
        [
            &b"AAA\n"[..],
            b"BBB\n",
            b"\n",
            b"C\n",
            b"DDDDDDDDDDD\n",
            b"EEE"
        ]
    );
    assert_eq!(lines(b"\n"), [&b"\n"[..]]);
    // Documented choice: empty input gives zero pieces.
    assert!(lines(b"").is_empty());
    assert_eq!(
        Index::split_lines(plain(b"").to_shared())
            .unwrap()
            .offsets(),
        [0]
    );
    assert!(Index::split_lines(arr(vec![]).to_shared()).is_err());
}

#[test]
fn array_matches_the_fetch_example() {
    // Spec 4.5: a pyobj travels as its pickled bytes under the pyobj id (16).
    let t = ids();
    let a = plain(b"AB");
    let b = plain(b"");
    let js = DataRef::new(DataObject::PyObj(PyObj::new(b"obj".to_vec())));
    let inner = arr(vec![a.clone(), b]);
    let outer = arr(vec![inner, a, js]);
    assert_eq!((outer.size(), outer.length()), (2 + 2 + 3, 3));
    let mut out = Vec::new();
    encode_stream(4, &outer, &t, &mut out);
    assert_eq!(out.len(), encoded_len(4, &outer, &t));
    let f = frames(&out);
    assert_eq!(f[0], hex("0804 1006 1812"));
    assert_eq!(f[1], hex("12000000 13000000 10000000"));
    assert_eq!(f[2], hex("13000000 13000000"));
    assert_eq!(f[3], b"AB");
    assert_eq!(f[4], b"");
    assert_eq!(f[5], b"AB");
    assert_eq!(f[6], b"obj");
    assert_eq!(f.len(), 7);
}

#[test]
fn empty_array_is_one_empty_frame() {
    let a = arr(vec![]);
    assert_eq!((a.size(), a.length(), n_frames(&a)), (0, 0, 1));
    let mut out = Vec::new();
    encode_stream(1, &a, &ids(), &mut out);
    assert_eq!(frames(&out)[1], b"");
}

fn same(a: &DataObject, b: &DataObject) {
    assert_eq!(a.type_name().replace("file", "data"), b.type_name());
    assert_eq!((a.size(), a.length()), (b.size(), b.length()));
    assert_eq!(a.bytes(), b.bytes());
    for i in 0..a.length() {
        same(&a.get(i).unwrap(), &b.get(i).unwrap());
    }
}

#[test]
fn decoder_roundtrip_of_nested_objects() {
    let dd = tmp_dir("roundtrip");
    let big = vec![7u8; SPILL_LIMIT + 10];
    let bigp = DataRef::new(DataObject::Plain(dd.plain(big).unwrap()));
    assert!(bigp.file_path().is_some());
    let idx = DataRef::new(DataObject::Index(
        Index::split_lines(plain(b"a\nbb\nccc").to_shared()).unwrap(),
    ));
    let js = DataRef::new(DataObject::JsObj(JsObj::new(b"{}".to_vec())));
    let py = DataRef::new(DataObject::PyObj(PyObj::new(b"\x80\x05N.".to_vec())));
    let objs = [
        py.clone(),
        plain(b"hello"),
        plain(b""),
        bigp.clone(),
        arr(vec![]),
        idx.clone(),
        js.clone(),
        arr(vec![
            arr(vec![plain(b"x"), idx, arr(vec![])]),
            bigp,
            js,
            py,
            plain(b""),
        ]),
    ];
    let mut stream = Vec::new();
    for (i, o) in objs.iter().enumerate() {
        encode_stream(i as i32 * 10, o, &ids(), &mut stream);
    }
    let got = decode_all(&stream, &dd);
    assert_eq!(got.len(), objs.len());
    for (i, (o, (id, d))) in objs.iter().zip(&got).enumerate() {
        assert_eq!(*id, i as i32 * 10);
        same(o, d);
    }
    // The received big plain was spilled to its own file.
    assert!(got[3].1.file_path().is_some());
    assert_eq!(
        (got[0].1.type_name(), got[0].1.info()),
        (PYOBJ_TYPE, "PyObj".into())
    );
}

#[test]
fn decoder_rejects_inconsistent_streams() {
    let dd = tmp_dir("reject");
    let t = ids();
    let mut dec = StreamDecoder::new();
    assert_eq!(dec.next_frame(&t), NextFrame::Header);
    // Header says 2 frames for a plain object.
    let h = hex("0801 1002 1813");
    dec.feed(&h, &t, &dd).unwrap();
    assert_eq!(dec.next_frame(&t), NextFrame::Plain);
    assert!(dec.feed(b"x", &t, &dd).is_err());
    // Header says 1 frame for an index.
    let mut dec = StreamDecoder::new();
    dec.feed(&hex("0801 1001 1811"), &t, &dd).unwrap();
    assert_eq!(dec.next_frame(&t), NextFrame::Other);
    assert!(dec
        .feed(&hex("13000000 0000000000000000"), &t, &dd)
        .is_err());
    // Offsets beyond the base.
    let mut dec = StreamDecoder::new();
    dec.feed(&hex("0801 1002 1811"), &t, &dd).unwrap();
    dec.feed(&hex("13000000 0000000000000000 0900000000000000"), &t, &dd)
        .unwrap();
    assert!(dec.feed(b"abc", &t, &dd).is_err());
    // Unknown types.
    let mut dec = StreamDecoder::new();
    assert!(dec.feed(&hex("0801 1000 1813"), &t, &dd).is_err());
}

#[test]
fn spilled_plain_file_dies_with_the_last_reference() {
    let dd = tmp_dir("spill");
    let p = DataRef::new(DataObject::Plain(
        dd.plain(vec![1u8; SPILL_LIMIT + 1]).unwrap(),
    ));
    let path = p.file_path().unwrap().to_owned();
    assert_eq!(path, dd.path().join("1"));
    assert_eq!(p.info(), format!("RawData file={}", path.display()));
    assert_eq!(p.size(), SPILL_LIMIT as u64 + 1);
    let second = p.clone();
    drop(p);
    assert!(path.exists());
    drop(second);
    assert!(!path.exists());
    // At the limit it stays in memory.
    assert!(dd
        .plain(vec![0; SPILL_LIMIT])
        .unwrap()
        .file_path()
        .is_none());
}

#[test]
fn extern_file_is_mapped_and_kept() {
    let dd = tmp_dir("extern");
    let path = dd.path().join("ext");
    std::fs::write(&path, b"line1\nline2").unwrap();
    let f = DataRef::new(DataObject::File(ExternFile::open(&path, &dd).unwrap()));
    assert_eq!((f.size(), f.length(), f.type_name()), (11, 0, "loom/file"));
    assert_eq!(f.info(), format!("<ExternFile '{}'>", path.display()));
    // Sent as loom/data.
    let mut out = Vec::new();
    encode_stream(3, &f, &ids(), &mut out);
    assert_eq!(frames(&out)[0], hex("0803 1001 1813"));
    // An index over a file reads its mapping.
    let idx = Index::split_lines(f.clone().to_shared()).unwrap();
    assert_eq!(idx.piece(1), b"line2");
    drop((f, idx));
    assert!(path.exists());
    // Empty file: no mapping needed.
    let empty = dd.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert_eq!(ExternFile::open(&empty, &dd).unwrap().bytes(), b"");
    let e = ExternFile::open(dd.path().join("missing"), &dd).unwrap_err();
    assert_eq!(strerror(&e), "No such file or directory");
    assert_eq!(
        strerror(&ExternFile::open(dd.path(), &dd).unwrap_err()),
        "Is a directory"
    );
}

#[test]
fn extern_file_is_a_snapshot_and_special_files_are_refused() {
    let dd = tmp_dir("snapshot");
    let path = dd.path().join("big");
    std::fs::write(&path, vec![b'x'; 1 << 20]).unwrap();
    let f = DataRef::new(DataObject::File(ExternFile::open(&path, &dd).unwrap()));
    let copy = f.file_path().unwrap().to_owned();
    assert_ne!(copy, path);
    // Truncated under it: the object keeps the old bytes (no SIGBUS).
    std::fs::write(&path, b"").unwrap();
    let idx = Index::split_lines(f.clone().to_shared()).unwrap();
    assert_eq!(idx.piece(0).len(), 1 << 20);
    drop((f, idx));
    assert!(!copy.exists(), "the private copy dies with the object");
    // A FIFO nobody writes to is refused at once.
    let fifo = dd.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = ExternFile::open(&fifo, &dd).unwrap_err();
    assert_eq!(strerror(&e), "not a regular file (it is a FIFO)");
}

#[test]
fn adopt_moves_a_file_into_the_data_dir() {
    let dd = tmp_dir("adopt");
    let src = dd.path().join("out");
    std::fs::write(&src, b"result").unwrap();
    let p = dd.adopt(&src).unwrap();
    assert!(!src.exists());
    assert_eq!(p.bytes(), b"result");
    let path = p.file_path().unwrap().to_owned();
    drop(p);
    assert!(!path.exists());
    assert!(dd.adopt(&src).is_err());
}

#[test]
fn jsobj_size_is_its_byte_length() {
    let j = DataObject::JsObj(JsObj::new(vec![0; 42]));
    assert_eq!(
        (j.size(), j.length(), j.type_name()),
        (42, 0, "loom/js/obj")
    );
    assert!(j.bytes().is_none());
}

#[test]
fn stream_parts_share_large_objects_and_equal_the_copied_stream() {
    let ids = ids();
    let big = plain(&vec![7u8; super::stream::SHARED_PAYLOAD_MIN + 1]);
    let small = plain(b"small");
    let obj = arr(vec![
        small.clone(),
        big.clone(),
        arr(vec![big.clone(), small]),
    ]);
    let parts =
        super::stream::encode_stream_parts(5, &obj, &ids, super::stream::SHARED_PAYLOAD_MIN);
    let shared = parts
        .iter()
        .filter(|p| matches!(p, super::stream::StreamPart::Shared(_)))
        .count();
    assert_eq!(shared, 2, "both large payloads are referenced, not copied");
    let joined: Vec<u8> = parts.iter().flat_map(|p| p.as_slice().to_vec()).collect();
    let mut copied = Vec::new();
    encode_stream(5, &obj, &ids, &mut copied);
    assert_eq!(joined, copied);
}

#[test]
fn headers_are_written_and_scanned_as_prost_does() {
    use crate::frame::push_frame;
    use crate::proto::comm::DataHeader;
    use prost::Message;
    let t = ids();
    let idx = DataRef::new(DataObject::Index(
        Index::split_lines(plain(b"a\nbb").to_shared()).unwrap(),
    ));
    let objs = [plain(b"xy"), arr(vec![plain(b"a"), arr(vec![])]), idx];
    for id in [0, 1, 127, 128, 300_000, i32::MAX, -1, i32::MIN] {
        for o in &objs {
            let want = DataHeader {
                id,
                n_messages: n_frames(o) as i64,
                type_id: t.wire_type(o),
            };
            let mut framed = Vec::new();
            push_frame(&mut framed, &want);
            let mut out = Vec::new();
            encode_stream(id, o, &t, &mut out);
            assert_eq!(&out[..framed.len()], &framed[..], "id {id}");
            let parts = encode_stream_parts(id, o, &t, usize::MAX);
            assert_eq!(&parts[0].as_slice()[..framed.len()], &framed[..]);
            assert_eq!(out.len(), encoded_len(id, o, &t));
            assert_eq!(scan_header(&framed[8..]), Some(want));
        }
    }
    // Another layout (fields out of order, an extra field) is left to prost.
    let mut other = Vec::new();
    DataHeader {
        id: 5,
        n_messages: 1,
        type_id: t.data,
    }
    .encode(&mut other)
    .unwrap();
    let reordered = [&other[2..], &other[..2]].concat();
    assert_eq!(scan_header(&reordered), None);
    assert_eq!(DataHeader::decode(&reordered[..]).unwrap().id, 5);
    let extra = [&other[..], &[0x20, 0x01]].concat();
    assert_eq!(scan_header(&extra), None);
    // The decoder takes both.
    let dd = tmp_dir("header-layouts");
    let mut dec = StreamDecoder::new();
    assert!(dec.feed(&reordered, &t, &dd).unwrap().is_none());
    let (id, obj) = dec.feed(b"z", &t, &dd).unwrap().unwrap();
    assert_eq!((id, obj.bytes().unwrap()), (5, &b"z"[..]));
}
