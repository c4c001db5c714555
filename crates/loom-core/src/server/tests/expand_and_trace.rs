//! dslice/dget expansion and the server trace.

use super::*;

#[test]
fn dslice_and_dget_expand() {
    let mut h = setup(1);
    // X = array of 8 consts (length 8); dslice(X) -> merge copies; result is T (array).
    h.send(2, &plan_req(0, dslice_plan(), &[]));
    // The consts, and the array over them pipelined behind them.
    assert_eq!(h.take().tasks(1).len(), 9);
    for i in 0..8 {
        h.fin(1, i, 1);
    }
    assert!(h.take().tasks(1).is_empty(), "the array was sent already");
    h.respond(1, worker_response::Type::Finished, 8, 8, 8);
    let seen = h.take();
    // 1 cpu -> slice size round(8/4) = 2 -> 4 slices; the copies of T consuming them are
    // pipelined in the same batch.
    let cmds = seen.of(1, 1);
    let slices: Vec<_> = cmds.iter().filter(|c| c.task_type == Some(0)).collect();
    let copies: Vec<_> = cmds.iter().filter(|c| c.task_type == Some(MERGE)).collect();
    assert_eq!((slices.len(), copies.len(), cmds.len()), (4, 4, 8));
    let cfg = slices[1].task_config.as_deref().unwrap();
    assert_eq!(cfg.len(), 16);
    assert_eq!(u64::from_le_bytes(cfg[..8].try_into().unwrap()), 2);
    assert_eq!(u64::from_le_bytes(cfg[8..].try_into().unwrap()), 4);
    assert!(slices
        .iter()
        .all(|s| s.task_type == Some(0) && s.task_inputs == vec![8]));
    let ids: Vec<i32> = slices.iter().map(|s| s.id.unwrap()).collect();
    for &s in &ids {
        h.fin(1, s, 2);
    }
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![8], "X is freed once every slice ran");
    assert_eq!(copies[0].task_inputs, vec![ids[0]]);
    let cids: Vec<i32> = copies.iter().map(|c| c.id.unwrap()).collect();
    for &c in &cids {
        h.fin(1, c, 2);
    }
    let seen = h.take();
    assert_eq!(seen.removes(1), ids);
    let arr = seen.of(1, 1);
    assert_eq!(arr.len(), 1);
    assert_eq!((arr[0].id, arr[0].task_type), (Some(10), Some(ARRAY)));
    assert_eq!(arr[0].task_inputs, cids);
    h.respond(1, worker_response::Type::Finished, 10, 8, 4);
    let seen = h.take();
    assert_eq!(seen.finished(2), vec![10]);
    assert_eq!(seen.removes(1), cids);

    // dget: N = 3 gets.
    let mut h = setup(1);
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"x", &[], false),
                task(DGET, b"", &[0], false),
                task(CONST, b"sep", &[], false),
                task(MERGE, b"", &[1, 2], true),
            ],
            &[],
        ),
    );
    assert_eq!(h.take().tasks(1), vec![0, 2]);
    h.fin(1, 2, 3);
    h.respond(1, worker_response::Type::Finished, 0, 3, 3);
    let seen = h.take();
    let cmds = seen.of(1, 1);
    let gets: Vec<_> = cmds.iter().filter(|g| g.task_type == Some(1)).collect();
    let copies: Vec<_> = cmds.iter().filter(|c| c.task_type == Some(MERGE)).collect();
    assert_eq!(
        (gets.len(), copies.len()),
        (3, 3),
        "gets, and the copies pipelined"
    );
    assert_eq!(
        gets[2].task_config.as_deref(),
        Some(&2u64.to_le_bytes()[..])
    );
    let gids: Vec<i32> = gets.iter().map(|g| g.id.unwrap()).collect();
    for &g in &gids {
        h.fin(1, g, 1);
    }
    h.take();
    assert_eq!(copies[1].task_inputs, vec![gids[1], 2]);
    // Invalid dslice shapes.
    let e = rejected(
        &mut h,
        plan_req(
            10,
            vec![
                task(CONST, b"x", &[], false),
                task(DSLICE, b"", &[10], true),
            ],
            &[],
        ),
    );
    assert!(e.contains("dslice/dget"), "{e}");
}

#[test]
fn trace_records_plan_schedule_finish_and_updates_workers() {
    let dir = std::env::temp_dir().join(format!("loom-server-trace-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut h = setup(1);
    h.send(
        2,
        &ClientRequest {
            r#type: client_request::Type::Trace as i32,
            trace_path: Some(dir.to_string_lossy().into_owned()),
            ..Default::default()
        },
    );
    let seen = h.take();
    let upd = seen.of(1, 9);
    assert_eq!(upd.len(), 1);
    assert_eq!(upd[0].trace_path.as_deref(), Some(dir.to_str().unwrap()));
    assert_eq!(upd[0].worker_id, Some(0));
    let mut a = task(CONST, b"AB", &[], false);
    a.label = Some("Init: a".into());
    let p = plan_req(
        0,
        vec![
            a,
            task(CONST, b"C", &[], false),
            task(MERGE, b"", &[0, 1], true),
        ],
        &[],
    );
    h.send(2, &p);
    h.take();
    h.fin(1, 0, 2);
    h.fin(1, 1, 1);
    h.respond(1, worker_response::Type::Failed, 2, 0, 0);
    // A worker registering later gets UPDATE too.
    h.worker(3, 2);
    let seen = h.take();
    let upd = seen.of(3, 9);
    assert_eq!(upd.len(), 1);
    assert_eq!(upd[0].worker_id, Some(1));
    h.s.trace_flush();
    let text = std::fs::read_to_string(dir.join("server.trace")).unwrap();
    let recs: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(&recs[0][..3], &["HYPERLOOM-TRACE", "1", "server"]);
    let find = |tag: &str| -> Vec<&Vec<&str>> { recs.iter().filter(|r| r[0] == tag).collect() };
    let merge = MERGE.to_string();
    assert!(find("Y")
        .iter()
        .any(|r| r[1] == merge && r[2] == "loom/data/merge"));
    let w = find("W");
    assert_eq!(w.len(), 2);
    assert_eq!((w[0][2], w[0][3], w[0][4]), ("0", "10.0.0.1:1001", "1"));
    assert_eq!((w[1][2], w[1][3], w[1][4]), ("1", "10.0.0.1:1003", "2"));
    assert_eq!(&find("P")[0][2..], &["0", "0", "3"]);
    let t = find("T");
    assert_eq!(t.len(), 3);
    assert_eq!(t[0].join(" "), format!("T 0 {CONST} - Init: a"));
    assert_eq!(t[2].join(" "), format!("T 2 {MERGE} 0,1"));
    let s: Vec<&str> = find("S").iter().map(|r| r[2]).collect();
    assert_eq!(s, vec!["0", "1", "2"]);
    let f: Vec<(&str, &str)> = find("F").iter().map(|r| (r[2], r[4])).collect();
    assert_eq!(f, vec![("0", "2"), ("1", "1")]);
    assert_eq!(&find("X")[0][2..], &["2", "0", "boom"], "with the message");
    assert!(!find("R").is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn trace_req(path: &str) -> ClientRequest {
    ClientRequest {
        r#type: client_request::Type::Trace as i32,
        trace_path: Some(path.into()),
        ..Default::default()
    }
}

fn labelled(label: &str) -> Task {
    let mut t = task(CONST, b"x", &[], true);
    t.label = Some(label.into());
    t
}

#[test]
fn trace_covers_the_asking_clients_plans_until_it_stops() {
    let dir = std::env::temp_dir().join(format!("loom-trace-owner-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut h = setup(1);
    h.client(3);
    h.take();
    h.send(2, &trace_req(dir.to_str().unwrap()));
    h.take();
    h.send(2, &plan_req(0, vec![labelled("mine")], &[]));
    h.send(3, &plan_req(0, vec![labelled("other")], &[]));
    // Workers are told which tasks are the tracing client's (they trace only those).
    let sent = h.take();
    let traced: Vec<Option<bool>> = sent.of(1, 1).iter().map(|c| c.traced).collect();
    assert_eq!(traced, [Some(true), None]);
    // Another client cannot stop it; the owner can, and the workers are told.
    h.send(3, &trace_req(""));
    assert!(h.take().of(1, 9).is_empty());
    h.send(2, &trace_req(""));
    let upd = h.take();
    assert_eq!(upd.of(1, 9)[0].trace_path.as_deref(), Some(""));
    h.send(2, &plan_req(1, vec![labelled("after")], &[]));
    h.take();
    let text = std::fs::read_to_string(dir.join("server.trace")).unwrap();
    assert!(text.contains(" mine\n"), "{text}");
    assert!(!text.contains("other"), "{text}");
    assert!(!text.contains("after"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
