//! Checkpoints (spec 8): paths forwarded in TASK, TASK_FINISHED delayed until written, write
//! and load failures, planning that stops at loadable tasks.

use super::*;
use worker_response::Type as R;

fn with_checkpoint(mut t: Task, path: &str) -> Task {
    t.checkpoint_path = Some(path.into());
    t
}

fn load(mut p: ClientRequest) -> ClientRequest {
    p.load_checkpoints = Some(true);
    p
}

/// The results that failed (`ClientResponse.id`; `error.id` names the task that caused it).
fn failed_ids(seen: &Seen, conn: ConnId) -> Vec<i32> {
    seen.resp(conn)
        .iter()
        .filter(|r| r.r#type == client_response::Type::TaskFailed as i32)
        .map(|r| r.id.unwrap())
        .collect()
}

#[test]
fn result_is_reported_only_once_its_checkpoint_is_written() {
    let mut h = setup(1);
    let a = with_checkpoint(task(CONST, b"a", &[], true), "/cp/a");
    h.send(2, &plan_req(0, vec![a, task(MERGE, b"", &[0], true)], &[]));
    let seen = h.take();
    assert_eq!(seen.of(1, 1)[0].checkpoint_path.as_deref(), Some("/cp/a"));
    assert_eq!(seen.of(1, 1)[1].checkpoint_path.as_deref(), Some(""));
    h.respond(1, R::FinishedAndCheckpointing, 0, 1, 0);
    h.fin(1, 1, 1);
    // The consumer finished; the checkpointed result is not reported yet.
    assert_eq!(h.take().finished(2), vec![1]);
    h.respond(1, R::CheckpointWritten, 0, 0, 0);
    assert_eq!(h.take().finished(2), vec![0]);
}

#[test]
fn a_failed_write_fails_the_task_and_its_unfinished_dependants_only() {
    let mut h = setup(1);
    let a = with_checkpoint(task(CONST, b"a", &[], true), "/cp/a");
    let p = plan_req(
        0,
        vec![
            a,
            task(MERGE, b"", &[0], true),
            task(CONST, b"x", &[], true),
        ],
        &[],
    );
    h.send(2, &p);
    h.take();
    h.respond(1, R::FinishedAndCheckpointing, 0, 1, 0);
    h.s.on_data(
        1,
        &framed(&WorkerResponse {
            r#type: R::CheckpointWriteFailed as i32,
            id: 0,
            error_msg: Some(b"Data 'Array' cannot be checkpointed"[..].into()),
            ..Default::default()
        }),
    );
    let seen = h.take();
    assert_eq!(failed_ids(&seen, 2), vec![0, 1]);
    // Both name the task whose checkpoint failed, with its raw message.
    assert!(seen
        .resp(2)
        .iter()
        .all(|r| r.error.as_ref().unwrap().id == Some(0)));
    let e = seen.resp(2)[0].error.clone().unwrap();
    assert_eq!(
        e.error_msg.as_deref(),
        Some(&b"Data 'Array' cannot be checkpointed"[..])
    );
    assert_eq!(seen.removes(1), vec![0]);
    h.fin(1, 2, 1);
    assert_eq!(h.take().finished(2), vec![2]);
    assert_eq!(stats(&mut h, 2), (1, 1));
}

#[test]
fn load_stops_planning_at_loadable_tasks() {
    let dir = std::env::temp_dir().join(format!("loom-cp-server-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("x");
    std::fs::write(&f, b"saved").unwrap();
    let fp = f.to_str().unwrap();
    let mut h = setup(1);
    // 0 (only needed by 1) -> 1 (checkpoint exists) -> 2; 3 (checkpoint missing).
    let p = load(plan_req(
        0,
        vec![
            task(CONST, b"a", &[], false),
            with_checkpoint(task(MERGE, b"", &[0], false), fp),
            task(MERGE, b"", &[1], true),
            with_checkpoint(task(CONST, b"b", &[], true), "/nonexistent/cp"),
        ],
        &[],
    ));
    h.send(2, &p);
    let seen = h.take();
    let loads = seen.of(1, 10);
    assert_eq!(loads.len(), 1);
    assert_eq!(
        (loads[0].id, loads[0].checkpoint_path.as_deref()),
        (Some(1), Some(fp))
    );
    // Task 0 is never computed; 3 is computed (and its checkpoint written).
    assert_eq!(seen.tasks(1), vec![2, 3]);
    h.respond(1, R::CheckpointLoaded, 1, 5, 0);
    h.fin(1, 2, 5);
    let seen = h.take();
    assert_eq!(seen.finished(2), vec![2]);
    assert_eq!(seen.removes(1), vec![1]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_load_fails_that_task_and_its_dependants_only() {
    let dir = std::env::temp_dir().join(format!("loom-cp-server-fail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fp = dir.to_str().unwrap();
    let mut h = setup(1);
    let p = load(plan_req(
        0,
        vec![
            with_checkpoint(task(CONST, b"a", &[], false), fp),
            task(MERGE, b"", &[0], true),
            task(CONST, b"b", &[], true),
        ],
        &[],
    ));
    h.send(2, &p);
    h.take();
    h.s.on_data(
        1,
        &framed(&WorkerResponse {
            r#type: R::CheckpointLoadFailed as i32,
            id: 0,
            error_msg: Some(b"File 'x' does not exists"[..].into()),
            ..Default::default()
        }),
    );
    h.fin(1, 2, 1);
    let seen = h.take();
    assert_eq!(failed_ids(&seen, 2), vec![1]);
    assert_eq!(seen.finished(2), vec![2]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn relative_checkpoint_paths_are_rejected() {
    let mut h = setup(1);
    let p = plan_req(
        0,
        vec![with_checkpoint(task(CONST, b"a", &[], true), "rel")],
        &[],
    );
    assert!(rejected(&mut h, p).contains("Checkpoint has to be absolute path"));
}

#[test]
fn a_loaded_checkpoint_lost_with_its_worker_is_loaded_again() {
    let dir = std::env::temp_dir().join(format!("loom-cp-server-lost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("x");
    std::fs::write(&f, b"saved").unwrap();
    let fp = f.to_str().unwrap();
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    // 0 is loaded (its input 1 is never computed); 2 needs 0 and runs for a while.
    let p = load(plan_req(
        0,
        vec![
            with_checkpoint(task(MERGE, b"", &[1], false), fp),
            task(CONST, b"never", &[], false),
            with_cpus(task(RUN, b"x", &[0], true), 0),
        ],
        &[1],
    ));
    h.send(2, &p);
    let seen = h.take();
    let (on1, on3) = (seen.of(1, 10).len(), seen.of(3, 10).len());
    assert_eq!(on1 + on3, 1);
    let (lw, other) = if on1 == 1 { (1, 3) } else { (3, 1) };
    h.respond(lw, R::CheckpointLoaded, 0, 5, 0);
    h.take();
    // The loading worker is lost before the consumer could get the data: loaded again, on the
    // survivor, and its never-needed input is still not computed.
    h.s.on_close(lw);
    let seen = h.take();
    let loads = seen.of(other, 10);
    assert_eq!(loads.len(), 1);
    assert_eq!(loads[0].id, Some(0));
    assert!(!seen.tasks(other).contains(&1));
    h.respond(other, R::CheckpointLoaded, 0, 5, 0);
    let seen = h.take();
    assert!(seen.tasks(other).contains(&2));
    h.fin(other, 2, 1);
    assert_eq!(h.take().finished(2), vec![2]);
    std::fs::remove_dir_all(&dir).unwrap();
}
