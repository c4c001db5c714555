//! Client requests: plans, fetch, release, errors, several clients, a client leaving.

use super::*;

#[test]
fn hello_full_flow() {
    let mut h = setup(1);
    let p = plan_req(
        0,
        vec![
            task(CONST, b"ABCDE", &[], false),
            task(CONST, b"123", &[], false),
            task(MERGE, b"", &[0, 1], true),
        ],
        &[],
    );
    h.send(2, &p);
    let seen = h.take();
    // The merge is pipelined: both its inputs are being computed on the same worker, so it is
    // sent in the same batch and the worker starts it when they are published.
    assert_eq!(seen.tasks(1), vec![0, 1, 2]);
    let t0 = seen.of(1, 1)[0];
    assert_eq!(t0.task_type, Some(CONST));
    assert_eq!(t0.task_config.as_deref(), Some(&b"ABCDE"[..]));
    assert_eq!(t0.checkpoint_path.as_deref(), Some(""));
    assert_eq!(seen.of(1, 1)[2].task_inputs, vec![0, 1]);
    h.fin(1, 0, 5);
    h.fin(1, 1, 3);
    let seen = h.take();
    assert!(seen.tasks(1).is_empty());
    assert_eq!(stats(&mut h, 2), (1, 2));
    h.fin(1, 2, 8);
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![0, 1]);
    assert_eq!(seen.finished(2), vec![2]);
    h.send(2, &req(client_request::Type::Fetch, Some(2)));
    let seen = h.take();
    let send = seen.of(1, 2);
    assert_eq!(
        (send[0].id, send[0].address.as_deref()),
        (Some(2), Some("!:9999"))
    );
    let hdr = DataHeader {
        id: 2,
        n_messages: 1,
        type_id: 19,
    }
    .encode_to_vec();
    let relay = h.s.on_data_header(&hdr).unwrap();
    assert_eq!(relay.client, 2);
    assert_eq!(relay.n_messages, 1);
    let r = ClientResponse::decode(&split(&relay.response_frame)[0][..]).unwrap();
    assert_eq!((r.r#type, r.data.unwrap().id), (1, 2));
    assert!(matches!(
        h.s.on_data_header(&hdr),
        Err(ServerError::NoReceiver {
            id: 2,
            n_messages: 1
        })
    ));
    h.send(2, &req(client_request::Type::Release, Some(2)));
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![2]);
    assert_eq!(stats(&mut h, 2), (1, 0));
    h.send(2, &req(client_request::Type::Release, Some(2)));
    assert_eq!(h.take().errors(2), vec!["Invalid id: 2"]);
    h.send(2, &req(client_request::Type::Terminate, None));
    assert!(h.take().terminate);
}

#[test]
fn fetch_errors() {
    let mut h = setup(1);
    h.send(
        2,
        &plan_req(
            0,
            vec![task(CONST, b"a", &[], false), task(MERGE, b"", &[0], true)],
            &[],
        ),
    );
    h.take();
    h.send(2, &req(client_request::Type::Fetch, Some(7)));
    h.send(2, &req(client_request::Type::Fetch, Some(0)));
    h.send(2, &req(client_request::Type::Fetch, Some(1)));
    let seen = h.take();
    assert_eq!(
        seen.errors(2),
        vec![
            "Invalid id: 7",
            "Task is not result",
            "Task is not finished"
        ]
    );
    assert_eq!(seen.error_ids(2), vec![Some(7), Some(0), Some(1)]);
    // RELEASE errors name the task too.
    h.send(2, &req(client_request::Type::Release, Some(9)));
    h.send(2, &req(client_request::Type::Release, Some(0)));
    let seen = h.take();
    assert_eq!(seen.errors(2), vec!["Invalid id: 9", "Task is not result"]);
    assert_eq!(seen.error_ids(2), vec![Some(9), Some(0)]);
}

#[test]
fn plan_validation_errors() {
    let mut h = setup(2);
    let mut labelled = task(CONST, b"", &[5], true);
    labelled.label = Some("my label".into());
    let e = rejected(&mut h, plan_req(0, vec![labelled], &[]));
    assert_eq!(
        e,
        "Plan rejected: task id=0 (label 'my label'): unknown input id 5"
    );
    let e = rejected(&mut h, plan_req(0, vec![task(MERGE, b"", &[0], true)], &[]));
    assert!(e.contains("task id=0") && e.contains("itself"), "{e}");
    // After inputs the intake resolved as it read them (earlier tasks of the plan).
    let after = |bad: i32| {
        let c = task(CONST, b"", &[], false);
        plan_req(0, vec![c, task(MERGE, b"", &[0, 0, bad], true)], &[])
    };
    let e = rejected(&mut h, after(1));
    assert!(e.contains("task id=1") && e.contains("itself"), "{e}");
    let e = rejected(&mut h, after(7));
    assert_eq!(e, "Plan rejected: task id=1 (label ''): unknown input id 7");
    let e = rejected(
        &mut h,
        plan_req(
            0,
            vec![task(MERGE, b"", &[1], false), task(MERGE, b"", &[0], true)],
            &[],
        ),
    );
    assert!(e.contains("cycle"), "{e}");
    let e = rejected(&mut h, plan_req(0, vec![task(999, b"", &[], true)], &[]));
    assert!(e.contains("unknown task type 999"), "{e}");
    let e = rejected(&mut h, plan_req(0, vec![task(19, b"", &[], true)], &[]));
    assert!(e.contains("unknown task type 19"), "{e}");
    let mut p = plan_req(0, vec![with_cpus(task(RUN, b"", &[], true), 0)], &[1]);
    p.plan.as_mut().unwrap().resource_requests[0].resources[0].resource_type = 5;
    let e = rejected(&mut h, p);
    assert!(e.contains("unknown resource type 5"), "{e}");
    let e = rejected(
        &mut h,
        plan_req(0, vec![with_cpus(task(RUN, b"", &[], true), 0)], &[3]),
    );
    assert!(e.contains("no worker can satisfy cpus(3)"), "{e}");
    let e = rejected(
        &mut h,
        plan_req(0, vec![with_cpus(task(RUN, b"", &[], true), 4)], &[1]),
    );
    assert!(e.contains("resource request index"), "{e}");
    // Forward references without a cycle are fine.
    h.send(
        2,
        &plan_req(
            0,
            vec![task(MERGE, b"", &[1], true), task(CONST, b"x", &[], false)],
            &[],
        ),
    );
    let seen = h.take();
    assert!(seen.errors(2).is_empty());
    assert_eq!(
        seen.tasks(1),
        vec![1, 0],
        "the consumer is pipelined after its input"
    );
    // Overlapping id_base.
    let e = rejected(&mut h, plan_req(1, vec![task(CONST, b"", &[], true)], &[]));
    assert!(e.starts_with("Plan rejected: id_base 1 overlaps"), "{e}");
    // Malformed plan bytes.
    let mut bad = framed(&req(client_request::Type::Plan, None));
    bad.truncate(8);
    let mut raw = vec![0x08, 0x01, 0x12, 0x03, 0x12, 0x05, 0x08];
    let mut f = (raw.len() as u64).to_le_bytes().to_vec();
    f.append(&mut raw);
    h.s.on_data(2, &f);
    let seen = h.take();
    assert_eq!(
        seen.errors(2),
        vec!["Plan rejected: malformed plan message"]
    );
    assert_eq!(seen.resp(2)[0].error.as_ref().unwrap().id, Some(-1));
}

#[test]
fn cpus_request_accepted_without_workers_and_waits() {
    let mut h = H::new();
    h.client(2);
    h.take();
    h.send(
        2,
        &plan_req(0, vec![with_cpus(task(RUN, b"", &[], true), 0)], &[8]),
    );
    assert!(h.take().errors(2).is_empty());
    h.worker(1, 2);
    assert!(h.take().tasks(1).is_empty(), "too small for it: waits");
    h.worker(3, 8);
    assert_eq!(h.take().tasks(3), vec![0]);
}

#[test]
fn released_and_failed_inputs_rejected() {
    let mut h = setup(1);
    h.send(2, &plan_req(0, vec![task(CONST, b"a", &[], true)], &[]));
    h.take();
    h.fin(1, 0, 1);
    h.send(2, &req(client_request::Type::Release, Some(0)));
    h.take();
    let e = rejected(&mut h, plan_req(1, vec![task(MERGE, b"", &[0], true)], &[]));
    assert!(e.contains("unknown input id 0"), "{e}");
}

#[test]
fn two_clients_both_from_zero() {
    let mut h = setup(1);
    h.client(4);
    h.take();
    h.send(2, &plan_req(0, vec![task(CONST, b"one", &[], true)], &[]));
    h.send(4, &plan_req(0, vec![task(CONST, b"two", &[], true)], &[]));
    let seen = h.take();
    assert_eq!(seen.tasks(1), vec![0, 1]);
    h.fin(1, 1, 3);
    let seen = h.take();
    assert_eq!(seen.finished(4), vec![0]);
    assert!(seen.finished(2).is_empty());
    h.fin(1, 0, 3);
    assert_eq!(h.take().finished(2), vec![0]);
    h.send(4, &req(client_request::Type::Fetch, Some(0)));
    let seen = h.take();
    assert_eq!(seen.of(1, 2)[0].id, Some(1));
    let relay =
        h.s.on_data_header(
            &DataHeader {
                id: 1,
                n_messages: 1,
                type_id: 19,
            }
            .encode_to_vec(),
        )
        .unwrap();
    assert_eq!(relay.client, 4);
    let r = ClientResponse::decode(&split(&relay.response_frame)[0][..]).unwrap();
    assert_eq!(r.data.unwrap().id, 0);
}

#[test]
fn client_disconnect_leaves_residuals() {
    let mut h = setup(1);
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"a", &[], false),
                with_cpus(task(RUN, b"r", &[0], true), 0),
            ],
            &[1],
        ),
    );
    h.take();
    h.fin(1, 0, 1);
    assert_eq!(h.take().tasks(1), vec![1]);
    h.s.on_close(2);
    h.take();
    // New client: its 1-cpu task goes out at once (queued on the worker behind the residual
    // one, which still holds the cpu); the residual's late answer gets a REMOVE.
    h.client(4);
    h.take();
    h.send(
        4,
        &plan_req(0, vec![with_cpus(task(RUN, b"n", &[], true), 0)], &[1]),
    );
    assert_eq!(h.take().tasks(1), vec![2]);
    assert_eq!(
        h.s.workers[W0].over, 1,
        "booked beyond the worker's one cpu"
    );
    h.fin(1, 1, 1);
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![1]);
    assert!(seen.tasks(1).is_empty());
    h.fin(1, 2, 1);
    assert_eq!(h.take().finished(4), vec![0]);
    // A stale TRANSFERED for a discarded id is answered with REMOVE; FAILED is ignored.
    h.respond(1, worker_response::Type::Transfered, 0, 0, 0);
    h.respond(1, worker_response::Type::Failed, 12345, 0, 0);
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![0]);
    assert!(seen.close.is_empty());
}

/// A worker (1) and a client (2) whose plan is the results "a" (task 0) and "b" (1), "c" (2,
/// not a result) and then `more`; tasks 0 and 1 finished on the worker, and 2 when `c_finished`.
fn results_a_and_b(more: Vec<Task>, c_finished: bool) -> H {
    let mut h = setup(1);
    let mut plan = vec![
        task(CONST, b"a", &[], true),
        task(CONST, b"b", &[], true),
        task(CONST, b"c", &[], false),
    ];
    plan.extend(more);
    h.send(2, &plan_req(0, plan, &[]));
    h.take();
    h.fin(1, 0, 1);
    h.fin(1, 1, 1);
    if c_finished {
        h.fin(1, 2, 1);
    }
    h.take();
    h
}

#[test]
fn fetch_many_answers_each_id_as_a_fetch_alone() {
    let mut h = results_a_and_b(vec![task(MERGE, b"", &[2], true)], false);
    // One request: two finished results, an unknown id, one not finished; the packed encoding.
    let many = ClientRequest {
        r#type: client_request::Type::Fetch as i32,
        ids: vec![0, 7, 1, 3],
        ..Default::default()
    };
    h.send(2, &many);
    let seen = h.take();
    let sends: Vec<Option<i32>> = seen.of(1, 2).iter().map(|c| c.id).collect();
    assert_eq!(sends, vec![Some(0), Some(1)]);
    assert_eq!(
        seen.errors(2),
        vec!["Invalid id: 7", "Task is not finished"]
    );
    assert_eq!(seen.error_ids(2), vec![Some(7), Some(3)]);
    // Each object comes back under its own client id.
    for id in [1, 0] {
        let hdr = DataHeader {
            id,
            n_messages: 1,
            type_id: 19,
        }
        .encode_to_vec();
        let relay = h.s.on_data_header(&hdr).unwrap();
        let r = ClientResponse::decode(&split(&relay.response_frame)[0][..]).unwrap();
        assert_eq!(r.data.unwrap().id, id);
    }
}

#[test]
fn release_many_releases_each_id_as_a_release_alone() {
    let mut h = results_a_and_b(Vec::new(), true);
    assert_eq!(stats(&mut h, 2), (1, 2));
    // One request: two held results, an unknown id and a task that is not a result.
    h.send(
        2,
        &ClientRequest {
            r#type: client_request::Type::Release as i32,
            ids: vec![1, 7, 0, 2],
            ..Default::default()
        },
    );
    let seen = h.take();
    let mut removed = seen.removes(1);
    removed.sort();
    assert_eq!(removed, vec![0, 1]);
    assert_eq!(seen.errors(2), vec!["Invalid id: 7", "Task is not result"]);
    assert_eq!(seen.error_ids(2), vec![Some(7), Some(2)]);
    assert_eq!(stats(&mut h, 2), (1, 0));
}

#[test]
fn fetch_many_is_offered_only_to_a_client_that_asks() {
    let mut h = setup(1);
    h.take();
    let first_dictionary = |h: &mut H, conn: ConnId, features: Vec<String>| {
        h.s.on_connect(conn, "10.0.0.3");
        h.s.on_data(
            conn,
            &framed(&Register {
                protocol_version: 2,
                r#type: 2,
                features,
                ..Default::default()
            }),
        );
        h.take().resp(conn)[0].clone()
    };
    let ours = first_dictionary(
        &mut h,
        3,
        vec!["dictionary-updates".into(), "fetch-many".into()],
    );
    assert_eq!(ours.r#type, client_response::Type::Dictionary as i32);
    assert_eq!(ours.features, vec!["fetch-many".to_string()]);
    // The original client announces nothing: its DICTIONARY is the original's, no `features`.
    let original = first_dictionary(&mut h, 4, Vec::new());
    assert_eq!(original.r#type, client_response::Type::Dictionary as i32);
    assert!(original.features.is_empty());
}

#[test]
fn fetch_direct_answers_a_large_result_with_its_location() {
    let mut h = setup(1);
    h.s.on_connect(3, "10.0.0.3");
    h.s.on_data(
        3,
        &framed(&Register {
            protocol_version: 2,
            r#type: 2,
            features: vec!["fetch-many".into(), "fetch-direct".into()],
            ..Default::default()
        }),
    );
    let dict = h.take().resp(3)[0].clone();
    assert_eq!(dict.features, vec!["fetch-many", "fetch-direct"]);
    h.send(
        3,
        &plan_req(
            0,
            vec![task(CONST, b"a", &[], true), task(CONST, b"b", &[], true)],
            &[],
        ),
    );
    let seen = h.take();
    let ids: Vec<i32> = seen.of(1, 1).iter().map(|c| c.id.unwrap()).collect();
    let (big, small) = (ids[0], ids[1]);
    h.fin(1, big, crate::server::on_client::DIRECT_FETCH_MIN);
    h.fin(1, small, 10);
    h.take();
    h.send(
        3,
        &ClientRequest {
            r#type: client_request::Type::Fetch as i32,
            ids: vec![0, 1],
            ..Default::default()
        },
    );
    let seen = h.take();
    // The large one: its location, no SEND; the small one: relayed as ever.
    let sends: Vec<Option<i32>> = seen.of(1, 2).iter().map(|c| c.id).collect();
    assert_eq!(sends, vec![Some(small)]);
    let r = &seen.resp(3)[0];
    assert_eq!(r.r#type, client_response::Type::Location as i32);
    assert_eq!(r.id, Some(0));
    let loc = r.location.clone().unwrap();
    assert_eq!((loc.object, loc.size), (big, 1 << 20));
    assert_eq!(loc.address, "10.0.0.1:1001");
    // The fallback: `relay` makes it a plain FETCH.
    h.send(
        3,
        &ClientRequest {
            r#type: client_request::Type::Fetch as i32,
            id: Some(0),
            relay: Some(true),
            ..Default::default()
        },
    );
    let seen = h.take();
    let sends: Vec<Option<i32>> = seen.of(1, 2).iter().map(|c| c.id).collect();
    assert_eq!(sends, vec![Some(big)]);
    assert!(seen.resp(3).is_empty());
    // A client that did not announce it (client 2) is relayed whatever the size.
    h.send(2, &plan_req(0, vec![task(CONST, b"c", &[], true)], &[]));
    let id = h.take().of(1, 1)[0].id.unwrap();
    h.fin(1, id, 1 << 24);
    h.take();
    h.send(
        2,
        &ClientRequest {
            r#type: client_request::Type::Fetch as i32,
            id: Some(0),
            ..Default::default()
        },
    );
    let seen = h.take();
    assert_eq!(seen.of(1, 2).len(), 1);
    assert!(seen.resp(2).is_empty());
}
