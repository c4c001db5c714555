//! Bad input and random event sequences: only the offending connection closes, invariants hold.

use super::*;
use crate::server::segment::TaskState;

#[test]
fn garbage_closes_only_that_connection() {
    let mut h = setup(1);
    h.worker(3, 1);
    h.client(4);
    h.take();
    // Garbage from a worker, a client, and a bad first frame.
    h.s.on_data(3, &[3, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff]);
    h.s.on_data(4, &[2, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x63]);
    h.s.on_connect(5, "1.2.3.4");
    h.s.on_data(
        5,
        &framed(&Register {
            protocol_version: 3,
            r#type: 2,
            ..Default::default()
        }),
    );
    h.s.on_connect(6, "1.2.3.4");
    h.s.on_data(6, &[0xff; 16]);
    let seen = h.take();
    assert_eq!(seen.close, vec![3, 4, 5, 6]);
    assert_eq!(stats(&mut h, 2), (1, 0));
    h.s.on_close(3);
    h.send(2, &plan_req(0, vec![task(CONST, b"a", &[], true)], &[]));
    assert_eq!(h.take().tasks(1), vec![0]);
    // Unknown response type, unknown ids.
    h.respond(1, worker_response::Type::Finished, 777, 1, 0);
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![777]);
    assert!(seen.close.is_empty());
    assert!(h.s.on_data_header(b"\xff\xff").is_err());
}

#[test]
fn frames_split_across_chunks() {
    let mut h = setup(1);
    let mut bytes = framed(&plan_req(0, vec![task(CONST, b"a", &[], true)], &[]));
    bytes.extend(framed(&req(client_request::Type::Stats, None)));
    for b in bytes.chunks(3) {
        h.s.on_data(2, b);
    }
    let seen = h.take();
    assert_eq!(seen.tasks(1), vec![0]);
    assert_eq!(seen.resp(2).len(), 1);
    let fin = framed(&WorkerResponse {
        r#type: 1,
        id: 0,
        size: Some(1),
        length: None,
        error_msg: None,
    });
    let (a, b) = fin.split_at(5);
    h.s.on_data(1, a);
    assert!(h.take().finished(2).is_empty());
    h.s.on_data(1, b);
    assert_eq!(h.take().finished(2), vec![0]);
}

/// Mutated and random frames on every kind of connection: the server may close connections
/// but must never panic, and other connections keep working.
#[test]
fn fuzzed_frames_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let valid_plan = plan_req(
        0,
        vec![
            task(CONST, b"a", &[], false),
            with_cpus(task(RUN, b"r", &[0], false), 0),
            task(DSLICE, b"", &[1], false),
            task(MERGE, b"", &[2, 0], true),
        ],
        &[1],
    )
    .encode_to_vec();
    let valid_resp = WorkerResponse {
        r#type: 1,
        id: 0,
        size: Some(3),
        length: Some(2),
        error_msg: None,
    }
    .encode_to_vec();
    for round in 0..400 {
        let mut h = setup(2);
        h.worker(3, 1);
        h.take();
        for step in 0..20 {
            let base: &[u8] = if step % 2 == 0 {
                &valid_plan
            } else {
                &valid_resp
            };
            let mut payload = base.to_vec();
            for _ in 0..(rnd() % 4) {
                if payload.is_empty() {
                    break;
                }
                let i = (rnd() as usize) % payload.len();
                payload[i] = rnd() as u8;
            }
            if rnd() % 5 == 0 {
                payload.truncate((rnd() as usize) % (payload.len() + 1));
            }
            let conn = [1, 2, 3][(rnd() % 3) as usize];
            let mut f = (payload.len() as u64).to_le_bytes().to_vec();
            f.extend(payload);
            h.s.on_data(conn, &f);
            if rnd() % 7 == 0 {
                let id = (rnd() % 8) as i32;
                h.respond(1, worker_response::Type::Finished, id, 1, rnd() % 5);
            }
            let _ = h.s.on_data_header(&[(rnd() as u8), 1, 2]);
            h.s.take_output();
        }
        let _ = round;
    }
}

/// Random but well-formed event sequences: answers for running (and random) ids from random
/// workers, fetches, releases, new plans using earlier results, worker and client churn.
#[test]
fn random_event_sequences_keep_invariants() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let rounds: usize = std::env::var("LOOM_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    for round in 0..rounds {
        for _ in 0..round % 7 {
            rnd();
        }
        let mut h = H::new();
        // Low crash limits make poison tasks (and their interplay with lost data) frequent.
        h.s.set_max_crashes(1 + (round % 3) as u32);
        let mut next_conn = 10;
        h.worker(1, 2);
        h.worker(3, 1);
        h.client(2);
        h.take();
        let mut alive_workers = vec![1u32, 3];
        let mut client = 2u32;
        let mut next_base = 0i32;
        // Tasks handed out and not answered yet: (worker conn, internal id).
        let mut running: Vec<(u32, i32)> = Vec::new();
        let mut log: Vec<String> = Vec::new();
        for _step in 0..60 {
            let ev = rnd() % 10;
            log.push(format!("ev {ev} next_base {next_base} running {running:?}"));
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match ev {
                    0 | 1 => {
                        let n = 1 + (rnd() % 6) as i32;
                        let mut tasks = Vec::new();
                        for i in 0..n {
                            let ty = [CONST, MERGE, RUN, ARRAY, DGET, DSLICE][(rnd() % 6) as usize];
                            let mut inputs = Vec::new();
                            if ty != CONST && ty != RUN {
                                let k = if ty == DGET || ty == DSLICE {
                                    1
                                } else {
                                    rnd() % 3
                                };
                                for _ in 0..k {
                                    if next_base + i > 0 {
                                        inputs.push((rnd() % (next_base + i) as u64) as i32);
                                    }
                                }
                            }
                            let mut t = task(ty, b"c", &inputs, rnd() % 2 == 0);
                            if ty == RUN {
                                t = with_cpus(t, 0);
                            }
                            tasks.push(t);
                        }
                        log.push(format!(
                            "plan {next_base}: {:?}",
                            tasks
                                .iter()
                                .map(|t| (t.task_type, t.input_ids.clone(), t.result))
                                .collect::<Vec<_>>()
                        ));
                        h.send(client, &plan_req(next_base, tasks, &[1]));
                        // Accepted or not, the next plan starts after this one.
                        next_base += n;
                    }
                    2..=5 => {
                        if running.is_empty() {
                            return;
                        }
                        if rnd() % 3 == 0 {
                            // One worker answers all it runs in one read, in the layout
                            // workers send: a read's FINISHED frames free their inputs
                            // together (a merge's two, an array's many, across plans).
                            let w = running[(rnd() as usize) % running.len()].0;
                            let mut read = Vec::new();
                            for &(_, id) in running.iter().filter(|r| r.0 == w) {
                                push_frame(
                                    &mut read,
                                    &WorkerResponse {
                                        r#type: worker_response::Type::Finished as i32,
                                        id,
                                        size: Some(rnd() % 100),
                                        length: None,
                                        error_msg: None,
                                    },
                                );
                            }
                            running.retain(|r| r.0 != w);
                            log.push(format!("worker {w} finishes all it runs"));
                            h.s.on_data(w, &read);
                            return;
                        }
                        let k = (rnd() as usize) % running.len();
                        let (w, id) = running.swap_remove(k);
                        let ty = match rnd() % 6 {
                            0 => worker_response::Type::Failed,
                            _ => worker_response::Type::Finished,
                        };
                        let len = rnd() % 4;
                        log.push(format!("respond {w} {ty:?} {id} len {len}"));
                        h.respond(w, ty, id, rnd() % 100, len);
                    }
                    6 => {
                        let id = (rnd() % (next_base.max(1) as u64)) as i32;
                        let ty = if rnd() % 2 == 0 {
                            client_request::Type::Release
                        } else {
                            client_request::Type::Fetch
                        };
                        h.send(client, &req(ty, Some(id)));
                    }
                    7 => {
                        if let Some(&w) = alive_workers.first() {
                            let id = (rnd() % 50) as i32;
                            h.respond(w, worker_response::Type::Transfered, id, 0, 0);
                        }
                    }
                    8 => {
                        if alive_workers.len() > 1 && rnd() % 2 == 0 {
                            let k = (rnd() as usize) % alive_workers.len();
                            let w = alive_workers.remove(k);
                            log.push(format!("close worker {w}"));
                            h.s.on_close(w);
                            running.retain(|r| r.0 != w);
                        } else {
                            next_conn += 1;
                            h.worker(next_conn, 1 + (rnd() % 3) as i32);
                            alive_workers.push(next_conn);
                        }
                    }
                    _ => {
                        if rnd() % 3 == 0 {
                            h.s.on_close(client);
                            next_conn += 1;
                            client = next_conn;
                            h.client(client);
                            next_base = 0;
                        }
                    }
                }
            }));
            if let Err(e) = r {
                eprintln!("{}", log.join("\n"));
                std::panic::resume_unwind(e);
            }
            let seen = h.take();
            assert!(
                seen.close.is_empty(),
                "well-formed input closed a connection"
            );
            for (&w, cmds) in &seen.cmds {
                for c in cmds {
                    if c.r#type == 1 {
                        running.push((w, c.id.unwrap()));
                    }
                }
            }
            // Invariants: cpus never exceed capacity; the objects the status shows for a
            // client are its finished tasks, counted here task by task (a gone client's
            // segments went with it: none).
            for c in h.s.snapshot().clients {
                let finished: usize =
                    h.s.graph
                        .segs
                        .iter()
                        .filter(|s| s.client.index() == c.id as usize)
                        .map(|s| {
                            s.tasks
                                .iter()
                                .filter(|t| t.state == TaskState::Finished)
                                .count()
                        })
                        .sum();
                assert_eq!(c.objects, finished as i64, "objects\n{}", log.join("\n"));
            }
            for wk in h.s.workers.list.iter() {
                assert!(wk.free_cpus <= wk.cpus);
                assert!(wk.over <= wk.cpus * workers::POOLED_OVERBOOK);
                assert!(wk.free_cpus == 0 || wk.over == 0);
                assert!(wk.light <= LIGHT_CAP);
            }
            for seg in h.s.graph.segs.iter() {
                let live = seg.tasks.iter().filter(|t| t.state.is_live()).count();
                assert_eq!(
                    live as u32,
                    seg.live,
                    "seg base {:?} states {:?}\n{}",
                    seg.base,
                    seg.tasks.iter().map(|t| t.state).collect::<Vec<_>>(),
                    log.join("\n")
                );
            }
        }
    }
}

#[test]
fn data_header_without_required_fields_is_refused() {
    let mut h = setup(1);
    // `0802`: id 1 only (the conformance suite's truncated header).
    assert!(matches!(
        h.s.on_data_header(&[0x08, 0x02]),
        Err(ServerError::Malformed(_))
    ));
}
