//! Task failures and worker loss.

use super::*;

#[test]
fn failure_propagates_only_to_dependants() {
    let mut h = setup(2);
    let mut run = with_cpus(task(RUN, b"r", &[0], false), 0);
    run.label = Some("myrun".into());
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"a", &[], false),
                run,
                task(MERGE, b"", &[1, 0], true),
                task(ARRAY, b"", &[2], true),
                task(CONST, b"d", &[], true),
            ],
            &[1],
        ),
    );
    assert_eq!(h.take().tasks(1), vec![0, 4]);
    h.fin(1, 0, 1);
    // The run, and the light tasks depending on it (pipelined to the same worker).
    assert_eq!(h.take().tasks(1), vec![1, 2, 3]);
    h.respond(1, worker_response::Type::Failed, 1, 0, 0);
    let seen = h.take();
    let failed: Vec<_> = seen.resp(2).into_iter().filter(|r| r.r#type == 3).collect();
    assert_eq!(failed.len(), 2);
    // Each held result that fails (response id) names the task that failed (error id) with
    // its label and raw message: no nesting.
    assert_eq!(failed[0].id, Some(2));
    let e = failed[0].error.as_ref().unwrap();
    assert_eq!(e.id, Some(1));
    assert_eq!(e.label.as_deref(), Some("myrun"));
    assert_eq!(e.worker.as_deref(), Some("10.0.0.1:1001"));
    assert_eq!(e.error_msg.as_deref(), Some(&b"boom"[..]));
    assert_eq!(failed[1].id, Some(3));
    assert_eq!(failed[1].error.as_ref().unwrap().id, Some(1));
    assert_eq!(seen.removes(1), vec![0], "the input nobody needs any more");
    h.fin(1, 4, 1);
    assert_eq!(h.take().finished(2), vec![4]);
    // The pipelined dependants will never start on the worker: their slots are free again.
    assert_eq!(h.s.workers[W0].light, 0);
    // Depending on a failed task is rejected.
    let e = rejected(&mut h, plan_req(5, vec![task(MERGE, b"", &[2], true)], &[]));
    assert!(e.contains("failed") || e.contains("unknown"), "{e}");
}

#[test]
fn failed_result_itself_reported() {
    let mut h = setup(1);
    h.send(2, &plan_req(0, vec![task(CONST, b"a", &[], true)], &[]));
    h.take();
    h.respond(1, worker_response::Type::Failed, 0, 0, 0);
    let seen = h.take();
    let r = seen.resp(2)[0];
    assert_eq!(r.r#type, 3);
    let e = r.error.as_ref().unwrap();
    assert_eq!(
        (e.id, e.error_msg.as_deref()),
        (Some(0), Some(&b"boom"[..]))
    );
}

#[test]
fn worker_loss_reschedules_and_recomputes() {
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"a", &[], false),
                task(CONST, b"b", &[], false),
                with_cpus(task(RUN, b"x", &[0], false), 0),
                with_cpus(task(RUN, b"y", &[1], false), 0),
                task(MERGE, b"", &[2, 3], true),
            ],
            &[1],
        ),
    );
    let seen = h.take();
    assert_eq!((seen.tasks(1), seen.tasks(3)), (vec![0], vec![1]));
    h.fin(1, 0, 1);
    h.fin(3, 1, 1);
    let seen = h.take();
    assert_eq!((seen.tasks(1), seen.tasks(3)), (vec![2], vec![3]));
    h.fin(3, 3, 5); // y on worker 3
    h.take();
    // Worker 3 dies: y (only there, needed by the merge) is recomputed from b... but b was
    // freed (y finished), so the merge fails? No: b is freed, hence y cannot be recomputed.
    h.s.on_close(3);
    let seen = h.take();
    let failed: Vec<_> = seen.resp(2).into_iter().filter(|r| r.r#type == 3).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].error.as_ref().unwrap().error_msg.as_deref(),
        Some(&b"Worker lost"[..])
    );
    assert_eq!(stats(&mut h, 2).0, 1);

    // Running task on a lost worker is rescheduled.
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    h.send(
        2,
        &plan_req(
            0,
            vec![
                with_cpus(task(RUN, b"x", &[], true), 0),
                with_cpus(task(RUN, b"y", &[], true), 0),
            ],
            &[1],
        ),
    );
    let seen = h.take();
    assert_eq!((seen.tasks(1), seen.tasks(3)), (vec![0], vec![1]));
    h.s.on_close(3);
    // Rescheduled on the surviving worker, queued there behind task 0.
    assert_eq!(h.take().tasks(1), vec![1]);
    h.fin(1, 0, 1);
    let seen = h.take();
    assert!(seen.tasks(1).is_empty());
    assert_eq!(seen.finished(2), vec![0]);
    h.fin(1, 1, 1);
    assert_eq!(h.take().finished(2), vec![1]);

    // Lost data whose inputs still exist is recomputed.
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"a", &[], true),
                task(MERGE, b"", &[0], false),
                with_cpus(task(RUN, b"slow", &[], false), 0),
                task(MERGE, b"", &[1, 2], true),
            ],
            &[1],
        ),
    );
    let seen = h.take();
    // Task 1 (light, its only input computed on worker 1) is pipelined there.
    assert_eq!((seen.tasks(1), seen.tasks(3)), (vec![0, 1], vec![2]));
    h.fin(1, 0, 1);
    assert!(h.take().tasks(1).is_empty());
    h.fin(1, 1, 1); // task 1 on worker 1, a (result) is also on worker 1
    h.take();
    h.s.on_close(1);
    let seen = h.take();
    // a is a held result with no inputs: recomputed (light, runs beside the 1-cpu task);
    // 1 is recomputed from it and 3 (whose other input runs there too) follow, pipelined.
    assert_eq!(seen.tasks(3), vec![0, 1, 3]);
    h.fin(3, 0, 1);
    let seen = h.take();
    assert!(seen.tasks(3).is_empty());
    assert!(
        seen.finished(2).is_empty(),
        "result 0 was already announced"
    );
    h.fin(3, 1, 1);
    assert!(h.take().tasks(3).is_empty());
    h.fin(3, 2, 1);
    assert!(h.take().tasks(3).is_empty());
    h.fin(3, 3, 1);
    assert_eq!(h.take().finished(2), vec![3]);
    // The recomputed result 0 was not announced twice; it can still be fetched and released.
    h.send(2, &req(client_request::Type::Fetch, Some(0)));
    let seen = h.take();
    assert_eq!(seen.of(3, 2)[0].id, Some(0));
    h.send(2, &req(client_request::Type::Release, Some(0)));
    h.send(2, &req(client_request::Type::Release, Some(3)));
    let seen = h.take();
    assert_eq!(seen.removes(3), vec![0, 3]);
    assert_eq!(stats(&mut h, 2), (1, 0));
    assert!(h.s.graph.segs.is_empty(), "every segment was dropped");
    assert!(h.s.graph.labels.is_empty() && h.s.graph.extra_cons.is_empty());
    assert!(h.s.moves.fetches.is_empty());
}

#[test]
fn fetch_resent_after_worker_loss() {
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    h.send(2, &plan_req(0, vec![task(CONST, b"a", &[], true)], &[]));
    assert_eq!(h.take().tasks(1), vec![0]);
    h.fin(1, 0, 1);
    h.take();
    h.send(2, &req(client_request::Type::Fetch, Some(0)));
    assert_eq!(h.take().of(1, 2).len(), 1);
    h.s.on_close(1);
    let seen = h.take();
    assert_eq!(seen.tasks(3), vec![0], "recomputed on the other worker");
    h.fin(3, 0, 1);
    let seen = h.take();
    let send = seen.of(3, 2);
    assert_eq!(
        (send[0].id, send[0].address.as_deref()),
        (Some(0), Some("!:9999"))
    );
    assert!(seen.finished(2).is_empty(), "announced once only");
    let relay =
        h.s.on_data_header(
            &DataHeader {
                id: 0,
                n_messages: 1,
                type_id: 19,
            }
            .encode_to_vec(),
        )
        .unwrap();
    assert_eq!(relay.client, 2);
}
