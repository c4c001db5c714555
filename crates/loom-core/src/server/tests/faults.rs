//! Faults (#18): foreign ids, fetches during recomputation, CANCEL, dictionary updates,
//! poison tasks, server-wide stats.

use super::*;

// Faults (#18)

impl H {
    fn worker_with(&mut self, conn: ConnId, cpus: i32, features: &[&str], extra: &[&str]) {
        self.s.on_connect(conn, "10.0.0.1");
        let r = Register {
            protocol_version: 2,
            r#type: 1,
            port: Some(1000 + conn as i32),
            task_types: ORIGINAL_TASK_TYPES
                .iter()
                .chain(extra.iter())
                .map(|s| s.to_string())
                .collect(),
            data_types: vec!["loom/data".into()],
            cpus: Some(cpus),
            features: features.iter().map(|s| s.to_string()).collect(),
            session: None,
            held: Vec::new(),
        };
        self.s.on_data(conn, &framed(&r));
        self.workers.push(conn);
    }

    fn client_with(&mut self, conn: ConnId, features: &[&str]) {
        self.s.on_connect(conn, "10.0.0.2");
        let r = Register {
            protocol_version: 2,
            r#type: 2,
            features: features.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        self.s.on_data(conn, &framed(&r));
    }

    /// The worker connection a task went to.
    fn worker_of(seen: &Seen, id: i32) -> ConnId {
        *seen
            .cmds
            .iter()
            .find(|(_, cmds)| cmds.iter().any(|c| c.r#type == 1 && c.id == Some(id)))
            .expect("task sent")
            .0
    }
}

#[test]
fn a_plan_may_reference_only_results_the_client_holds() {
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
    // Id 0 exists in this client's numbering, but it is no future of the client.
    let mut t = task(MERGE, b"", &[0], true);
    t.label = Some("via B".into());
    h.send(2, &plan_req(2, vec![t], &[]));
    let seen = h.take();
    let errs = seen.errors(2);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("Plan rejected: task id=2 (label 'via B'): input id 0 is not a result this client holds"),
        "{}",
        errs[0]
    );
    assert_eq!(seen.resp(2)[0].error.as_ref().unwrap().id, Some(2));
}

#[test]
fn a_fetch_of_a_result_being_recomputed_waits_for_it() {
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    h.send(2, &plan_req(0, vec![task(CONST, b"a", &[], true)], &[]));
    let seen = h.take();
    let w = H::worker_of(&seen, 0);
    h.fin(w, 0, 1);
    assert_eq!(h.take().finished(2), vec![0]);
    h.s.on_close(w);
    let other = if w == 1 { 3 } else { 1 };
    let seen = h.take();
    assert_eq!(seen.tasks(other), vec![0], "recomputed on the other worker");
    assert!(seen.resp(2).is_empty(), "nothing to say to the client yet");
    h.send(2, &req(client_request::Type::Fetch, Some(0)));
    let seen = h.take();
    assert!(seen.errors(2).is_empty(), "no 'Task is not finished'");
    assert!(seen.of(other, 2).is_empty(), "no SEND before it exists");
    h.fin(other, 0, 1);
    let seen = h.take();
    assert_eq!(seen.of(other, 2).len(), 1, "SEND once recomputed");
    assert!(
        seen.finished(2).is_empty(),
        "one TASK_FINISHED per result, ever"
    );
}

#[test]
fn a_gone_clients_tasks_are_canceled_on_workers_that_announce_it() {
    for cancel in [true, false] {
        let mut h = H::new();
        h.worker_with(1, 1, if cancel { &["cancel"] } else { &[] }, &[]);
        h.client(2);
        h.take();
        h.send(
            2,
            &plan_req(0, vec![with_cpus(task(RUN, b"r", &[], true), 0)], &[1]),
        );
        assert_eq!(h.take().tasks(1), vec![0]);
        assert_eq!(h.s.workers[W0].free_cpus, 0);
        h.s.on_close(2);
        let seen = h.take();
        let cancels: Vec<_> = seen.of(1, 11).iter().map(|c| c.id).collect();
        if cancel {
            assert_eq!(cancels, vec![Some(0)]);
            assert_eq!(h.s.workers[W0].free_cpus, 1, "its core is free at once");
        } else {
            assert!(cancels.is_empty(), "the original worker never gets CANCEL");
            assert_eq!(h.s.workers[W0].free_cpus, 0, "freed when it answers");
            h.respond(1, worker_response::Type::Failed, 0, 0, 0);
            assert_eq!(h.s.workers[W0].free_cpus, 1);
        }
    }
}

#[test]
fn clients_that_ask_learn_task_types_of_workers_that_register_later() {
    let mut h = H::new();
    h.worker(1, 1);
    h.client_with(2, &["dictionary-updates"]);
    h.client(4);
    h.take();
    h.worker_with(3, 1, &[], &["my/count"]);
    let seen = h.take();
    let dict: Vec<_> = seen
        .resp(2)
        .into_iter()
        .filter(|r| r.r#type == 10)
        .collect();
    assert_eq!(dict.len(), 1);
    assert_eq!(dict[0].symbols.last().map(String::as_str), Some("my/count"));
    assert!(
        seen.resp(4).is_empty(),
        "the original client gets no unsolicited DICTIONARY"
    );
    // Nothing new: nothing sent.
    h.worker_with(5, 1, &[], &["my/count"]);
    assert!(h.take().resp(2).is_empty());
}

#[test]
fn a_task_that_crashes_its_workers_fails_after_max_crashes() {
    let mut h = H::new();
    for w in [1, 3, 5] {
        h.worker(w, 1);
    }
    h.client(2);
    h.take();
    h.send(
        2,
        &plan_req(0, vec![with_cpus(task(RUN, b"r", &[], true), 0)], &[1]),
    );
    let mut seen = h.take();
    for crash in 1..=2 {
        let w = H::worker_of(&seen, 0);
        h.s.on_close(w);
        seen = h.take();
        let failed: Vec<_> = seen.resp(2).into_iter().filter(|r| r.r#type == 3).collect();
        if crash == 1 {
            assert!(failed.is_empty(), "tried again after one crash");
        } else {
            assert_eq!(failed.len(), 1);
            let e = failed[0].error.as_ref().unwrap();
            assert_eq!(e.id, Some(0));
            assert!(String::from_utf8_lossy(e.error_msg.as_deref().unwrap())
                .starts_with("Task crashed 2 workers"));
            assert!(
                seen.cmds.values().all(|c| c.iter().all(|c| c.r#type != 1)),
                "not retried"
            );
        }
    }
}

#[test]
fn stats_count_the_objects_of_every_client() {
    let mut h = setup(1);
    h.client(4);
    h.take();
    h.send(2, &plan_req(0, vec![task(CONST, b"a", &[], true)], &[]));
    h.take();
    h.fin(1, 0, 1);
    h.take();
    assert_eq!(stats(&mut h, 4), (1, 1));
}

/// Chaos seed 2026, rounds 263 and 378: a poison task whose input's only copy was on the
/// worker lost with it. Failing the poison task released that input (freed: retired), and the
/// lost-data pass then retired it again, so its plan's live count reached 0 early: the plan was
/// dropped with a result being recomputed (never reported: hung; a FETCH answered "Invalid
/// id") and the objects count went wrong.
#[test]
fn a_poison_task_whose_input_was_lost_with_it_keeps_its_plan_alive() {
    let mut h = H::new();
    h.worker(1, 1);
    h.client(2);
    h.take();
    // 0 -> 1 (heavy, result) and 2 (another result of the plan): all on worker 1 first.
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"a", &[], false),
                with_cpus(task(RUN, b"r", &[0], true), 0),
                task(CONST, b"z", &[], true),
            ],
            &[1],
        ),
    );
    let mut w = 1;
    for (crash, next) in [(1, 3), (2, 5)] {
        let seen = h.take();
        let mut sent = seen.tasks(w);
        sent.sort();
        assert_eq!(sent, vec![0, 2], "crash {crash}");
        h.fin(w, 0, 1);
        h.fin(w, 2, 1);
        let seen = h.take();
        assert_eq!(
            seen.tasks(w),
            vec![1],
            "crash {crash}: 1 runs where its input is"
        );
        if crash == 1 {
            assert_eq!(seen.finished(2), vec![2]);
        }
        // A new worker joins, then the one running 1 (and holding 0 and 2) is lost.
        h.worker(next, 1);
        h.take();
        h.s.on_close(w);
        w = next;
    }
    let seen = h.take();
    assert_eq!(
        seen.tasks(w),
        vec![2],
        "only the lost result is computed again"
    );
    let failed: Vec<_> = seen.resp(2).into_iter().filter(|r| r.r#type == 3).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, Some(1));
    // The result being recomputed is still the client's: its fetch waits, then is served.
    h.send(2, &req(client_request::Type::Fetch, Some(2)));
    let seen = h.take();
    assert!(seen.errors(2).is_empty(), "{:?}", seen.errors(2));
    h.fin(w, 2, 1);
    let seen = h.take();
    assert_eq!(seen.of(w, 2).len(), 1, "SEND of the recomputed result");
    assert!(seen.removes(w).is_empty(), "{:?}", seen.removes(w));
    assert_eq!(
        stats(&mut h, 2),
        (1, 1),
        "one worker left, one object: the result 2"
    );
    h.send(2, &req(client_request::Type::Release, Some(2)));
    assert_eq!(h.take().removes(w), vec![2]);
    assert_eq!(stats(&mut h, 2), (1, 0));
}

#[test]
fn a_task_sent_early_whose_input_failed_is_canceled_on_its_worker() {
    for cancel in [true, false] {
        let mut h = H::new();
        h.worker_with(1, 1, if cancel { &["cancel"] } else { &[] }, &[]);
        h.client(2);
        h.take();
        // 1 is light: it goes to the worker of 0 at once and waits there for 0.
        h.send(
            2,
            &plan_req(
                0,
                vec![
                    with_cpus(task(RUN, b"r", &[], false), 0),
                    task(MERGE, b"", &[0], true),
                ],
                &[1],
            ),
        );
        assert_eq!(h.take().tasks(1), vec![0, 1]);
        h.respond(1, worker_response::Type::Failed, 0, 0, 0);
        let seen = h.take();
        assert_eq!(seen.error_ids(2), vec![Some(0)]);
        let cancels: Vec<_> = seen.of(1, 11).iter().map(|c| c.id).collect();
        assert_eq!(cancels, if cancel { vec![Some(1)] } else { vec![] });
        assert_eq!(h.s.workers[W0].light, 0);
        assert_eq!(h.s.workers[W0].tasks, 0);
    }
}

/// Two poison tasks lost with one worker, one consuming the other (its input was lost with
/// another worker while being transferred, and recomputed beside it): the first one's failure
/// fails the second as its dependant; it must not be failed (retired) again.
#[test]
fn poison_tasks_depending_on_each_other_fail_once() {
    let mut h = H::new();
    h.s.set_max_crashes(1);
    h.worker(1, 1);
    h.client(2);
    h.take();
    // 0 -> 1, 0 -> 2 (results); 3 keeps worker 1 busy. All heavy.
    h.send(
        2,
        &plan_req(
            0,
            vec![
                with_cpus(task(RUN, b"a", &[], false), 0),
                with_cpus(task(RUN, b"b", &[0], true), 0),
                with_cpus(task(RUN, b"c", &[0], true), 0),
                with_cpus(task(RUN, b"d", &[], true), 0),
            ],
            &[1],
        ),
    );
    assert_eq!(h.take().tasks(1), vec![0, 3]);
    h.fin(1, 0, 10);
    assert_eq!(
        h.take().tasks(1),
        vec![1],
        "1 beside its input; no room for 2"
    );
    h.worker(3, 1);
    let seen = h.take();
    assert_eq!(seen.tasks(3), vec![2]);
    assert_eq!(seen.of(1, 2).len(), 1, "SEND of 0 to worker 3");
    // Worker 1 is lost before the transfer completes: 1 and 3 fail (crash limit 1), 0 is
    // recomputed beside 2.
    h.s.on_close(1);
    let seen = h.take();
    assert_eq!(seen.tasks(3), vec![0]);
    // Worker 3 is lost while running 0 and 2: both hit the limit; 2 fails once, as 0's dependant.
    h.s.on_close(3);
    let seen = h.take();
    let failed: Vec<_> = seen.resp(2).into_iter().filter(|r| r.r#type == 3).collect();
    assert_eq!(failed.len(), 1, "one TASK_FAILED: the held result 2");
    assert_eq!(failed[0].id, Some(2));
    assert_eq!(failed[0].error.as_ref().unwrap().id, Some(0), "caused by 0");
    h.s.after_event();
    assert!(
        h.s.graph.segs.is_empty(),
        "every task failed: the plan is gone"
    );
    assert_eq!(stats(&mut h, 2), (0, 0));
}

/// A task running on a surviving worker whose input's only copy was lost and cannot be
/// recomputed waits there for a transfer that never comes: it is canceled and its cores are
/// free at once (before, they stayed booked for good).
#[test]
fn a_running_task_whose_input_is_lost_for_good_is_canceled() {
    let mut h = H::new();
    h.worker_with(1, 1, &["cancel"], &[]);
    h.client(2);
    h.take();
    // 1 <- 0; 0 is freed once 1 finished, so 1 cannot be recomputed.
    h.send(
        2,
        &plan_req(
            0,
            vec![
                with_cpus(task(RUN, b"a", &[], false), 0),
                with_cpus(task(RUN, b"b", &[0], true), 0),
            ],
            &[1],
        ),
    );
    assert_eq!(h.take().tasks(1), vec![0]);
    h.fin(1, 0, 10);
    assert_eq!(h.take().tasks(1), vec![1]);
    h.fin(1, 1, 10);
    assert_eq!(h.take().removes(1), vec![0]);
    // Worker 1 is kept busy (2 and 3: its core and its overbooking), so 4 goes to worker 3.
    h.send(
        2,
        &plan_req(
            2,
            vec![
                with_cpus(task(RUN, b"x", &[], true), 0),
                with_cpus(task(RUN, b"y", &[], true), 0),
            ],
            &[1],
        ),
    );
    assert_eq!(h.take().tasks(1), vec![2, 3]);
    h.worker_with(3, 1, &["cancel"], &[]);
    h.take();
    h.send(
        2,
        &plan_req(4, vec![with_cpus(task(RUN, b"c", &[1], true), 0)], &[1]),
    );
    let seen = h.take();
    assert_eq!(seen.tasks(3), vec![4]);
    assert_eq!(seen.of(1, 2).len(), 1, "SEND of 1 to worker 3");
    // Worker 1 is lost: 1 cannot be recomputed (0 is gone), so 1 and 4 fail.
    h.s.on_close(1);
    let seen = h.take();
    let mut failed: Vec<_> = seen
        .resp(2)
        .into_iter()
        .filter(|r| r.r#type == 3)
        .map(|r| r.id)
        .collect();
    failed.sort();
    assert_eq!(failed, vec![Some(1), Some(4)]);
    let cancels: Vec<_> = seen.of(3, 11).iter().map(|c| c.id).collect();
    assert_eq!(cancels, vec![Some(4)], "4 no longer waits on worker 3");
    // Its core is free: both tasks of worker 1 are rescheduled there (core + overbooking).
    let mut rerun = seen.tasks(3);
    rerun.sort();
    assert_eq!(rerun, vec![2, 3]);
}
