//! The data port's relay of whole objects ([`Server::relay_whole`]): DATA_BATCH per client for
//! `data-batch` clients, one DATA each for the original's, in order, nothing per object left to
//! the socket layer.

use super::*;

/// A client on `conn` announcing `features`; its dictionary drained.
fn client_with(h: &mut H, conn: ConnId, features: &[&str]) {
    h.s.on_connect(conn, "10.0.0.3");
    h.s.on_data(
        conn,
        &framed(&Register {
            protocol_version: 2,
            r#type: 2,
            features: features.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        }),
    );
    h.take();
}

/// Client `conn` submits `n` const results (its ids 0..n), all finished on worker 1 and fetched
/// in one request; returns the server's ids of them (in client id order).
fn fetched(h: &mut H, conn: ConnId, n: i32) -> Vec<i32> {
    let tasks = (0..n).map(|i| task(CONST, &[i as u8], &[], true)).collect();
    h.send(conn, &plan_req(0, tasks, &[]));
    let ids = h.take().tasks(1);
    for &id in &ids {
        h.fin(1, id, 1);
    }
    h.take();
    h.send(
        conn,
        &ClientRequest {
            r#type: client_request::Type::Fetch as i32,
            ids: (0..n).collect(),
            ..Default::default()
        },
    );
    let sends: Vec<i32> = h.take().of(1, 2).iter().map(|c| c.id.unwrap()).collect();
    assert_eq!(sends, ids);
    ids
}

/// What a worker streams for object `id`: its header and `frames`.
fn stream(id: i32, frames: &[&[u8]]) -> Vec<u8> {
    let mut v = framed_header(id, frames.len() as i64);
    for f in frames {
        v.extend_from_slice(&(f.len() as u64).to_le_bytes());
        v.extend_from_slice(f);
    }
    v
}

fn framed_header(id: i32, n: i64) -> Vec<u8> {
    framed(&DataHeader {
        id,
        n_messages: n,
        type_id: 19,
    })
}

/// Reads a DATA_BATCH frame at the start of `b`: its table (client id, type id, frame count)
/// and the bytes after it.
fn batch(b: &[u8]) -> (Vec<(i32, i32, u32)>, &[u8]) {
    let len = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let r = ClientResponse::decode(&b[8..8 + len]).unwrap();
    assert_eq!(r.r#type, 103, "DATA_BATCH");
    let t = r.data_batch.unwrap();
    let e = t
        .chunks(12)
        .map(|e| {
            let w = |i: usize| e[i..i + 4].try_into().unwrap();
            (
                i32::from_le_bytes(w(0)),
                i32::from_le_bytes(w(4)),
                u32::from_le_bytes(w(8)),
            )
        })
        .collect();
    (e, &b[8 + len..])
}

#[test]
fn whole_objects_of_a_chunk_reach_a_data_batch_client_as_one_batch_and_their_frames() {
    let mut h = setup(8);
    client_with(&mut h, 3, &["fetch-many", "data-batch"]);
    let ids = fetched(&mut h, 3, 4);
    let mut chunk = Vec::new();
    chunk.extend(stream(ids[0], &[b"a"]));
    chunk.extend(stream(ids[1], &[b"bb", b"cc"]));
    chunk.extend(stream(ids[2], &[]));
    let whole = chunk.len();
    // The fourth object's last frame is cut: it is left to the socket layer.
    let cut = stream(ids[3], &[b"dddd"]);
    chunk.extend_from_slice(&cut[..cut.len() - 1]);
    let r = h.s.relay_whole(&chunk);
    assert_eq!((r.consumed, r.objects), (whole, 3));
    assert_eq!(r.writes, vec![(3, r.bytes.len())]);
    let (table, frames) = batch(&r.bytes);
    assert_eq!(table, vec![(0, 19, 1), (1, 19, 2), (2, 19, 0)]);
    let mut want = Vec::new();
    for f in [&b"a"[..], b"bb", b"cc"] {
        want.extend_from_slice(&(f.len() as u64).to_le_bytes());
        want.extend_from_slice(f);
    }
    assert_eq!(frames, &want[..]);
    // Each fetch is answered once: the same objects again have nobody waiting.
    let again = h.s.relay_whole(&chunk[..whole]);
    assert_eq!((again.consumed, again.objects), (whole, 3));
    assert!(again.writes.is_empty() && again.bytes.is_empty());
    // The fourth still waits, for the header path.
    let relay = h.s.on_data_header(&cut[8..cut.len() - 12]).unwrap();
    assert_eq!((relay.client, relay.n_messages), (3, 1));
}

#[test]
fn the_original_client_gets_one_data_per_object_byte_for_byte() {
    let mut h = setup(8);
    client_with(&mut h, 3, &["fetch-many"]);
    let ids = fetched(&mut h, 3, 2);
    let mut chunk = stream(ids[0], &[b"one"]);
    chunk.extend(stream(ids[1], &[b"two"]));
    let r = h.s.relay_whole(&chunk);
    assert_eq!((r.consumed, r.objects), (chunk.len(), 2));
    // What the header path would have written: DATA, then the frame, per object.
    let mut want = Vec::new();
    for (cid, f) in [(0, &b"one"[..]), (1, b"two")] {
        want.extend(framed(&ClientResponse {
            r#type: client_response::Type::Data as i32,
            data: Some(DataHeader {
                id: cid,
                n_messages: 1,
                type_id: 19,
            }),
            ..Default::default()
        }));
        want.extend_from_slice(&(f.len() as u64).to_le_bytes());
        want.extend_from_slice(f);
    }
    assert_eq!(r.bytes, want);
}

#[test]
fn a_lone_object_gets_data_and_clients_get_theirs_in_order() {
    let mut h = setup(8);
    client_with(&mut h, 3, &["fetch-many", "data-batch"]);
    client_with(&mut h, 4, &["fetch-many", "data-batch"]);
    let a = fetched(&mut h, 3, 2);
    let b = fetched(&mut h, 4, 1);
    let mut chunk = stream(a[0], &[b"a0"]);
    chunk.extend(stream(b[0], &[b"b0"]));
    chunk.extend(stream(a[1], &[b"a1"]));
    let r = h.s.relay_whole(&chunk);
    assert_eq!(r.objects, 3);
    assert_eq!(r.writes.iter().map(|w| w.0).collect::<Vec<_>>(), vec![3, 4]);
    let (table, _) = batch(&r.bytes[..r.writes[0].1]);
    assert_eq!(table, vec![(0, 19, 1), (1, 19, 1)]);
    // Client 4's one object: an ordinary DATA.
    let theirs = &r.bytes[r.writes[0].1..r.writes[1].1];
    let first = &split(theirs)[0];
    let d = ClientResponse::decode(&first[..]).unwrap();
    assert_eq!((d.r#type, d.data.unwrap().id), (1, 0));
}

#[test]
fn a_header_in_another_layout_or_a_gone_client_is_handled_as_before() {
    let mut h = setup(8);
    client_with(&mut h, 3, &["fetch-many", "data-batch"]);
    let ids = fetched(&mut h, 3, 2);
    // Fields in another order: prost reads it, the scan does not; relay_whole stops before it.
    let mut odd = Vec::new();
    let payload = [0x10, 0x01, 0x08, ids[1] as u8, 0x18, 19];
    odd.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    odd.extend_from_slice(&payload);
    odd.extend_from_slice(&1u64.to_le_bytes());
    odd.push(b'x');
    let mut chunk = stream(ids[0], &[b"first"]);
    let first = chunk.len();
    chunk.extend(odd);
    let r = h.s.relay_whole(&chunk);
    assert_eq!((r.consumed, r.objects), (first, 1));
    let relay = h.s.on_data_header(&payload).unwrap();
    assert_eq!(relay.client, 3);
    // A malformed header is not taken either (on_data_header reports it).
    let bad = [2u64.to_le_bytes().as_slice(), &[0xff, 0xff]].concat();
    assert_eq!(h.s.relay_whole(&bad).consumed, 0);
    assert!(h.s.on_data_header(&[0xff, 0xff]).is_err());
    // A client gone: its objects are taken and dropped.
    client_with(&mut h, 5, &["fetch-many", "data-batch"]);
    let ids = fetched(&mut h, 5, 1);
    h.s.on_close(5);
    h.take();
    let chunk = stream(ids[0], &[b"late"]);
    let r = h.s.relay_whole(&chunk);
    assert_eq!((r.consumed, r.objects, r.bytes.len()), (chunk.len(), 1, 0));
}
