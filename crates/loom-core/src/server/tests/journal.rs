//! The journal: what a server emits, and a fresh server restored from it (checkpoints loaded,
//! released results not planned, the session re-attached with its queued responses).

use super::*;
use crate::journal::{parse, Record};
use worker_response::Type as R;

/// Registers a client announcing "session" (re-attaching to `session` if given); returns what
/// it was sent and the journal records emitted meanwhile.
fn session_client(h: &mut H, conn: ConnId, session: Option<u64>) -> (Vec<ClientResponse>, Vec<u8>) {
    h.s.on_connect(conn, "10.0.0.2");
    let r = Register {
        protocol_version: 2,
        r#type: 2,
        features: vec!["dictionary-updates".into(), "session".into()],
        session,
        ..Default::default()
    };
    h.s.on_data(conn, &framed(&r));
    let out = h.s.take_output();
    let resps = out
        .writes
        .iter()
        .filter(|(c, _)| *c == conn)
        .flat_map(|(_, b)| split(b))
        .map(|f| ClientResponse::decode(&f[..]).unwrap())
        .collect();
    (resps, out.journal)
}

#[test]
fn a_restored_server_loads_checkpoints_skips_released_results_and_reattaches_the_session() {
    let dir = std::env::temp_dir().join(format!("loom-journal-restore-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cp = dir.join("a").display().to_string();
    let mut h = H::new();
    h.s.enable_journal();
    h.worker(1, 2);
    let (hello, mut journal) = session_client(&mut h, 2, None);
    let session = hello[1].session.expect("a token");
    assert_eq!(hello[1].r#type, client_response::Type::Session as i32);
    let mut a = task(CONST, b"a", &[], false);
    a.checkpoint_path = Some(cp.clone());
    let b = task(MERGE, b"", &[0, 2], true);
    let c = task(CONST, b"c", &[], true);
    let d = task(CONST, b"d", &[], true);
    h.send(2, &plan_req(0, vec![a, b, c, d], &[]));
    journal.extend(h.s.take_output().journal);
    // a is checkpointed (its file written), c and d finished and released; b never finishes.
    h.respond(1, R::FinishedAndCheckpointing, 0, 1, 0);
    std::fs::write(&cp, "a").unwrap();
    h.respond(1, R::CheckpointWritten, 0, 0, 0);
    h.fin(1, 2, 1);
    h.fin(1, 3, 1);
    h.send(2, &req(client_request::Type::Release, Some(2)));
    h.send(2, &req(client_request::Type::Release, Some(3)));
    journal.extend(h.s.take_output().journal);
    let recs = parse(
        &[crate::journal::MAGIC.as_slice(), &journal].concat(),
        "j".as_ref(),
    )
    .unwrap()
    .records;
    assert!(recs.contains(&Record::Session { token: session }));
    assert!(recs.contains(&Record::Release {
        token: session,
        cid: 2
    }));
    assert!(recs.iter().any(|r| matches!(
        r,
        Record::Finished {
            cid: 0,
            checkpointed: true,
            ..
        }
    )));
    assert!(recs.iter().any(|r| matches!(
        r,
        Record::Finished {
            cid: 2,
            notified: true,
            ..
        }
    )));

    // A server restored from the records, with a worker re-registering that kept a, b, c, d
    // and an object the server never knew: a (loaded, ready) and b (its inputs adopted first)
    // are adopted, not recomputed; then a (b's input only, no result) is freed, c (the same,
    // never computed again), d (released) and 99 are removed on the worker. Nothing runs.
    {
        let mut h = H::new();
        h.s.enable_journal();
        h.s.restore(&recs);
        let held = [0, 1, 2, 3, 99]
            .map(|id| crate::proto::comm::HeldObject {
                id,
                size: Some(1),
                length: Some(0),
            })
            .to_vec();
        h.worker_holding(1, 2, held);
        let seen = h.take();
        assert!(seen.tasks(1).is_empty());
        assert!(seen.of(1, 10).is_empty());
        assert_eq!(seen.removes(1), vec![0, 2, 3, 99]);
        let (back, _) = session_client(&mut h, 3, Some(session));
        let finished: Vec<i32> = back
            .iter()
            .filter(|r| r.r#type == client_response::Type::TaskFinished as i32)
            .map(|r| r.id.unwrap())
            .collect();
        assert_eq!(finished, vec![1]);
    }
    // A server without a journal adopts nothing: every object a worker reports is removed.
    {
        let mut h = H::new();
        h.client(2);
        h.send(2, &plan_req(0, vec![task(CONST, b"x", &[], true)], &[]));
        let held = vec![crate::proto::comm::HeldObject {
            id: 0,
            size: Some(1),
            length: Some(0),
        }];
        h.worker_holding(1, 2, held);
        let seen = h.take();
        assert_eq!(seen.removes(1), vec![0]);
        assert_eq!(seen.tasks(1), vec![0]);
    }

    // The restart: a fresh server restores the records; a worker comes.
    let mut h = H::new();
    h.s.enable_journal();
    assert_eq!(h.s.restore(&recs), (1, 1));
    // c was reported before the restart: it waits for a worker to bring it back until the
    // reconnect grace ends (here at once, `--reconnect-grace 0`).
    assert_eq!(h.s.awaiting_results(), 1);
    h.s.end_reconnect_grace();
    h.worker(1, 2);
    let seen = h.take();
    // a is loaded from its checkpoint; d (released, used by nothing) is not planned; c was
    // released too but b needs it: computed again (b is pipelined behind it).
    let loads: Vec<i32> = seen.of(1, 10).iter().map(|t| t.id.unwrap()).collect();
    assert_eq!(loads, vec![0]);
    assert_eq!(seen.tasks(1), vec![2, 1]);
    h.respond(1, R::CheckpointLoaded, 0, 1, 0);
    h.fin(1, 2, 1);
    h.fin(1, 1, 2);
    // b finished while its client was away: it is told when it re-attaches.
    let (back, _) = session_client(&mut h, 3, Some(session));
    assert_eq!(back[0].r#type, client_response::Type::Dictionary as i32);
    assert_eq!(back[1].r#type, client_response::Type::Session as i32);
    assert_eq!((back[1].session, back[1].id), (Some(session), Some(4)));
    let finished: Vec<i32> = back[2..]
        .iter()
        .filter(|r| r.r#type == client_response::Type::TaskFinished as i32)
        .map(|r| r.id.unwrap())
        .collect();
    assert_eq!(finished, vec![1]);
    // An unknown session is refused with an ERROR naming it.
    let (refused, _) = session_client(&mut h, 4, Some(12345));
    assert!(refused[0]
        .error
        .as_ref()
        .unwrap()
        .error_msg
        .as_ref()
        .is_some_and(|m| String::from_utf8_lossy(m).contains("Session 3039 is unknown")));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn held(ids: &[i32]) -> Vec<crate::proto::comm::HeldObject> {
    ids.iter()
        .map(|&id| crate::proto::comm::HeldObject {
            id,
            size: Some(1),
            length: Some(0),
        })
        .collect()
}

/// The records of a plan r0, r1, r2 (results), x = merge(r0, r1) (a result never finished), k
/// (a constant, no result) and r5 = merge(k) (a result), with r0..r2 and r5 reported to the
/// client before the crash.
fn crashed_plan() -> Vec<Record> {
    let mut h = H::new();
    h.s.enable_journal();
    h.worker(1, 4);
    let (_, mut journal) = session_client(&mut h, 2, None);
    let x = task(MERGE, b"", &[0, 1], true);
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"0", &[], true),
                task(CONST, b"1", &[], true),
                task(CONST, b"2", &[], true),
                x,
                task(CONST, b"k", &[], false),
                task(MERGE, b"", &[4], true),
            ],
            &[],
        ),
    );
    // x waits for r0 and r1; it is lost with the crash before it runs.
    h.fin(1, 0, 1);
    h.fin(1, 1, 1);
    h.fin(1, 2, 1);
    h.fin(1, 4, 1);
    h.fin(1, 5, 1);
    journal.extend(h.s.take_output().journal);
    parse(
        &[crate::journal::MAGIC.as_slice(), &journal].concat(),
        "j".as_ref(),
    )
    .unwrap()
    .records
}

#[test]
fn the_reconnect_grace_holds_back_reported_results_until_their_workers_come_back() {
    let recs = crashed_plan();
    // A worker that reconnects first with nothing is given none of r0..r2, r5 (nor x, which
    // needs r0 and r1, nor k, needed only by r5); the late one brings r0, r2 and r5 back:
    // adopted, not computed (k is never computed). The grace still waits for r1; once it ends,
    // r1 is computed, then x.
    let mut h = H::new();
    h.s.enable_journal();
    h.s.restore(&recs);
    assert_eq!(h.s.awaiting_results(), 4);
    h.worker(1, 4);
    let seen = h.take();
    assert!(seen.tasks(1).is_empty(), "{:?}", seen.tasks(1));
    h.worker_holding(3, 4, held(&[0, 2, 5]));
    let seen = h.take();
    assert!(seen.tasks(1).is_empty() && seen.tasks(3).is_empty());
    assert!(seen.removes(3).is_empty());
    assert_eq!(h.s.awaiting_results(), 1);
    h.s.end_reconnect_grace();
    let seen = h.take();
    // r1 goes beside r0 (its sibling: both feed x), and x is pipelined there.
    assert!(seen.tasks(1).is_empty());
    assert_eq!(seen.tasks(3), vec![1, 3]);
    assert_eq!(h.s.awaiting_results(), 0);

    // Every result brought back: the grace ends by itself and x runs at once.
    let mut h = H::new();
    h.s.enable_journal();
    h.s.restore(&recs);
    h.worker(1, 4);
    h.worker_holding(3, 4, held(&[0, 1, 2, 5]));
    let seen = h.take();
    assert_eq!(h.s.awaiting_results(), 0);
    assert_eq!([seen.tasks(1), seen.tasks(3)].concat(), vec![3]);

    // Tasks needing nothing lost run at once, during the grace.
    let mut h = H::new();
    h.s.enable_journal();
    h.s.restore(&recs);
    h.worker(1, 4);
    let (_, _) = session_client(&mut h, 2, None);
    h.send(2, &plan_req(0, vec![task(CONST, b"new", &[], true)], &[]));
    let seen = h.take();
    assert_eq!(seen.tasks(1).len(), 1);
    assert_eq!(h.s.awaiting_results(), 4);
}
