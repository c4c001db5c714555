//! Status counters: the snapshot follows tasks through their states, per plan and label
//! group; failures are kept with their messages; STATUS answers with the snapshot.

use super::*;

fn labelled(mut t: Task, label: &str) -> Task {
    t.label = Some(label.into());
    t
}

#[test]
fn snapshot_counts_tasks_by_state_plan_and_group() {
    let mut h = setup(2);
    let run = with_cpus(task(RUN, b"r", &[0], false), 0);
    h.send(
        2,
        &plan_req(
            0,
            vec![
                labelled(task(CONST, b"a", &[], false), "load: a"),
                labelled(run, "render: 1"),
                labelled(task(MERGE, b"", &[1, 0], true), "render: merge"),
                task(CONST, b"d", &[], true),
                task(CONST, b"unused", &[], false),
            ],
            &[1],
        ),
    );
    assert_eq!(h.take().tasks(1), vec![0, 3]);
    let s = h.s.snapshot();
    assert_eq!(s.plans.len(), 1);
    let p = &s.plans[0];
    assert_eq!((p.id, p.size, p.state), (1, 5, "running"));
    let t = |waiting, ready, running, finished, failed| TaskCounts {
        waiting,
        ready,
        running,
        finished,
        failed,
    };
    // The unused task is never planned and not counted.
    assert_eq!(p.tasks, t(2, 0, 2, 0, 0));
    assert_eq!(s.tasks, p.tasks);
    let group = |s: &Snapshot, name: &str| {
        s.plans[0]
            .groups
            .iter()
            .find(|g| g.name == name)
            .map(|g| g.tasks)
    };
    assert_eq!(group(&s, "render"), Some(t(2, 0, 0, 0, 0)));
    assert_eq!(group(&s, "load"), Some(t(0, 0, 1, 0, 0)));
    assert_eq!(s.workers[0].running, 2);
    assert_eq!(s.clients.len(), 1);
    assert_eq!(s.clients[0].plans, 1);

    h.fin(1, 0, 100);
    h.take();
    h.respond(1, worker_response::Type::Failed, 1, 0, 0);
    h.fin(1, 3, 7);
    h.take();
    let s = h.s.snapshot();
    let p = &s.plans[0];
    // 0 and 3 finished; the run failed, and the merge with it.
    assert_eq!(p.tasks, t(0, 0, 0, 2, 2));
    assert_eq!(group(&s, "render"), Some(t(0, 0, 0, 0, 2)));
    assert_eq!(s.task_failures, 1);
    let f = &s.failures[0];
    assert_eq!((f.plan, f.task, f.label.as_str()), (1, 1, "render: 1"));
    assert_eq!(f.message, "boom");
    assert_eq!(f.worker, "10.0.0.1:1001");
    // Task 3 is held (a result), 0 was freed.
    assert_eq!((s.workers[0].objects, s.workers[0].bytes), (1, 7));
    assert_eq!(s.workers[0].running, 0);
    assert!(s.scheduler_rounds >= 1);
    assert_eq!(s.tasks_assigned, 4);

    h.send(2, &req(client_request::Type::Release, Some(3)));
    h.take();
    let s = h.s.snapshot();
    assert_eq!(s.plans[0].state, "done", "collected, still listed");
    assert_eq!(s.plans[0].tasks, t(0, 0, 0, 2, 2));
    assert_eq!(group(&s, "render"), Some(t(0, 0, 0, 0, 2)));
    assert_eq!((s.workers[0].objects, s.workers[0].bytes), (0, 0));
    assert_eq!(s.tasks, t(0, 0, 0, 2, 2));
}

#[test]
fn status_request_answers_with_the_snapshot_as_json() {
    let mut h = setup(3);
    h.send(2, &req(client_request::Type::Status, None));
    let seen = h.take();
    let r = seen.resp(2);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].r#type, client_response::Type::Status as i32);
    let json = std::str::from_utf8(r[0].status.as_deref().unwrap()).unwrap();
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["workers"][0]["cpus"], 3);
    assert_eq!(v["workers"][0]["alive"], true);
    assert_eq!(v["tasks"]["finished"], 0);
}

#[test]
fn a_worker_that_says_it_is_leaving_departs_others_are_lost() {
    let mut h = setup(1);
    h.worker(3, 1);
    h.worker(4, 1);
    assert_eq!(
        h.take().of(3, 8)[0].server_features,
        ["leaving", "trace-marked", "transfer-failed"],
        "the registration DICTIONARY announces what the server understands"
    );
    // Worker 1 (conn 1) runs a task, says it is leaving and goes: departed, the task is rerun
    // elsewhere without counting as a crash.
    h.send(
        2,
        &plan_req(0, vec![with_cpus(task(RUN, b"r", &[], true), 0)], &[1]),
    );
    let first = h.take();
    let on = [1, 3, 4]
        .into_iter()
        .find(|&c| !first.tasks(c).is_empty())
        .unwrap();
    h.respond(on, worker_response::Type::Leaving, 0, 0, 0);
    h.s.on_close(on);
    let again = h.take();
    assert_eq!(
        [1, 3, 4]
            .iter()
            .map(|&c| again.tasks(c).len())
            .sum::<usize>(),
        1,
        "rescheduled"
    );
    assert!(h.s.crashes.is_empty(), "a departure is not a crash");
    // Another is let go by the server (an allocation queue scaling down): departed.
    let next = [1, 3, 4].into_iter().find(|&c| c != on).unwrap();
    h.s.retire_worker(next);
    // The last one's connection closes unannounced: lost.
    let last = [1, 3, 4]
        .into_iter()
        .find(|&c| c != on && c != next)
        .unwrap();
    h.s.on_close(last);
    h.take();
    let s = h.s.snapshot();
    let state = |conn: ConnId| {
        let i = [1, 3, 4].iter().position(|&c| c == conn).unwrap();
        (s.workers[i].alive, s.workers[i].state)
    };
    assert_eq!(state(on), (false, "departed"));
    assert_eq!(state(next), (false, "departed"));
    assert_eq!(state(last), (false, "lost"));
    assert!(s.to_json().contains(r#""state":"departed""#));
}
