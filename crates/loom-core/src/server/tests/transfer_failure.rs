//! TRANSFER_FAILED (our extension): a worker gave up sending an object to another worker.

use super::*;

impl H {
    /// Worker `conn` gave up sending `id` to `address` for `cause`.
    fn transfer_failed(&mut self, conn: ConnId, id: i32, address: &str, cause: &str) {
        let m = WorkerResponse {
            r#type: worker_response::Type::TransferFailed as i32,
            id,
            size: None,
            length: None,
            error_msg: Some(format!("{address}\n{cause}").into_bytes().into()),
        };
        self.s.on_data(conn, &framed(&m));
    }
}

/// Two workers (conns 1 and 3, `10.0.0.1:1001` and `:1003`), a client (2); task 2 merges task 0
/// (1 MB, on worker 1) and task 1 (on worker 3), results of an earlier plan: it runs on worker 1
/// and task 1 is sent there from worker 3. Returns the harness with that SEND taken.
fn merge_needing_a_transfer() -> H {
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    let mut merge = task(MERGE, b"", &[1, 0], true);
    merge.label = Some("join".into());
    let mut small = task(CONST, b"small", &[], true);
    small.label = Some("small".into());
    // (Producers of one consumer in one plan would meet on one worker.)
    h.send(
        2,
        &plan_req(0, vec![task(CONST, b"big", &[], true), small], &[]),
    );
    h.take();
    h.fin(1, 0, 1_000_000);
    h.fin(3, 1, 10);
    h.take();
    h.send(2, &plan_req(2, vec![merge], &[]));
    let seen = h.take();
    assert_eq!(seen.tasks(1), vec![2]);
    assert_eq!(seen.of(3, 2).len(), 1, "SEND of task 1 from worker 3");
    h
}

#[test]
fn a_transfer_given_up_without_another_copy_fails_the_waiting_task_naming_the_object_and_cause() {
    let mut h = merge_needing_a_transfer();
    h.transfer_failed(
        3,
        1,
        "10.0.0.1:1001",
        "worker 10.0.0.1:1001 did not prove it holds our secret (5 attempts)",
    );
    let seen = h.take();
    assert_eq!(
        seen.error_ids(2),
        vec![Some(2)],
        "TASK_FAILED for the merge"
    );
    let failed = seen.resp(2).into_iter().find(|r| r.r#type == 3).unwrap();
    assert_eq!(
        failed.error.as_ref().unwrap().label.as_deref(),
        Some("join")
    );
    assert_eq!(
        seen.errors(2),
        vec!["input task id=1 (small) could not be transferred from worker 10.0.0.1:1003 to worker 10.0.0.1:1001: worker 10.0.0.1:1001 did not prove it holds our secret (5 attempts)".to_owned()]
    );
    // The server keeps serving: a late TRANSFERED or FINISHED for it is absorbed, the next plan runs.
    h.fin(1, 2, 5);
    h.take();
    h.send(2, &plan_req(3, vec![task(CONST, b"x", &[], true)], &[]));
    let seen = h.take();
    let on = if seen.tasks(1) == vec![3] { 1 } else { 3 };
    assert_eq!(seen.tasks(on), vec![3]);
    h.fin(on, 3, 1);
    assert_eq!(h.take().finished(2), vec![3]);
}

#[test]
fn a_stale_or_foreign_transfer_failure_changes_nothing() {
    let mut h = merge_needing_a_transfer();
    // Not the sender of that transfer, an unknown target, an object not on its way.
    h.transfer_failed(1, 1, "10.0.0.1:1001", "x");
    h.transfer_failed(3, 1, "10.9.9.9:1", "x");
    h.transfer_failed(3, 0, "10.0.0.1:1001", "x");
    let seen = h.take();
    assert!(seen.errors(2).is_empty());
    // The transfer still completes as usual.
    h.respond(1, worker_response::Type::Transfered, 1, 0, 0);
    h.fin(1, 2, 1_000_010);
    assert_eq!(h.take().finished(2), vec![2]);
}

/// Three workers (conns 1, 3, 5, registered in that order) and a client (2); tasks 0, 1 and 2
/// are consts on workers 1, 3 and 5, the one at `x` small (X), the others large. A merge of X
/// and the object on the `copy`-th worker runs there (X is copied there, task 3); then a merge
/// of X and the object on the `target`-th worker runs there (task 4), and X's owner is asked to
/// SEND it there. Returns the harness with that SEND taken.
fn x_copied_then_sent(x: usize, copy: usize, target: usize) -> H {
    const CONNS: [ConnId; 3] = [1, 3, 5];
    let mut h = H::new();
    for c in CONNS {
        h.worker(c, 1);
    }
    h.client(2);
    h.take();
    let consts = (0..3)
        .map(|i| task(CONST, if i == x { b"x" } else { b"big" }, &[], true))
        .collect();
    h.send(2, &plan_req(0, consts, &[]));
    let seen = h.take();
    assert_eq!(CONNS.map(|c| seen.tasks(c)), [vec![0], vec![1], vec![2]]);
    for (i, c) in CONNS.into_iter().enumerate() {
        h.fin(c, i as i32, if i == x { 10 } else { 1_000_000 });
    }
    h.take();
    let (owner, xid) = (CONNS[x], x as i32);
    h.send(
        2,
        &plan_req(3, vec![task(MERGE, b"", &[xid, copy as i32], true)], &[]),
    );
    let seen = h.take();
    assert_eq!(seen.tasks(CONNS[copy]), vec![3]);
    assert_eq!(seen.of(owner, 2).len(), 1, "SEND of X from its owner");
    h.respond(CONNS[copy], worker_response::Type::Transfered, xid, 0, 0);
    h.fin(CONNS[copy], 3, 1_000_010);
    h.take();
    // X comes from its first owner.
    h.send(
        2,
        &plan_req(4, vec![task(MERGE, b"", &[xid, target as i32], true)], &[]),
    );
    let seen = h.take();
    assert_eq!(seen.tasks(CONNS[target]), vec![4]);
    let send = seen.of(owner, 2);
    let to = format!("10.0.0.1:100{}", CONNS[target]);
    assert_eq!((send.len(), send[0].address.as_deref()), (1, Some(&to[..])));
    h
}

#[test]
fn a_transfer_given_up_is_sent_from_another_copy_then_fails_when_none_is_left() {
    // X on worker 1, copied to worker 3, asked of worker 1 for worker 5.
    let mut h = x_copied_then_sent(0, 1, 2);
    // Worker 1 gives up: the copy on worker 3 (registered after it) is sent instead.
    h.transfer_failed(1, 0, "10.0.0.1:1005", "refused");
    let seen = h.take();
    assert!(seen.errors(2).is_empty());
    let send = seen.of(3, 2);
    assert_eq!(
        (send.len(), send[0].id, send[0].address.as_deref()),
        (1, Some(0), Some("10.0.0.1:1005"))
    );
    // Worker 3 gives up too: no copy left after it, the merge fails.
    h.transfer_failed(3, 0, "10.0.0.1:1005", "refused again");
    let seen = h.take();
    assert_eq!(seen.error_ids(2), vec![Some(4)]);
    assert_eq!(
        seen.errors(2),
        vec!["input task id=0 could not be transferred from worker 10.0.0.1:1003 to worker 10.0.0.1:1005: refused again".to_owned()]
    );
}

#[test]
fn a_transfer_given_up_by_a_later_registered_worker_is_sent_from_a_copy_registered_before_it() {
    // X on worker 5 (the last registered), copied to worker 1, asked of worker 5 for worker 3.
    let mut h = x_copied_then_sent(2, 0, 1);
    // Worker 5 gives up: the copy on worker 1 (registered before it) is sent instead.
    h.transfer_failed(5, 2, "10.0.0.1:1003", "refused");
    let seen = h.take();
    assert!(seen.errors(2).is_empty());
    let send = seen.of(1, 2);
    assert_eq!(
        (send.len(), send[0].id, send[0].address.as_deref()),
        (1, Some(2), Some("10.0.0.1:1003"))
    );
    assert!(seen.of(5, 2).is_empty());
    // Worker 1 gives up too: the next copy would be worker 5's again, so the merge fails.
    h.transfer_failed(1, 2, "10.0.0.1:1003", "refused again");
    let seen = h.take();
    assert!(seen.of(5, 2).is_empty(), "worker 5 is not asked again");
    assert_eq!(seen.error_ids(2), vec![Some(4)]);
    assert_eq!(
        seen.errors(2),
        vec!["input task id=2 could not be transferred from worker 10.0.0.1:1001 to worker 10.0.0.1:1003: refused again".to_owned()]
    );
}

#[test]
fn a_redirection_is_forgotten_when_its_target_or_its_sender_is_lost() {
    // X on worker 1, copied to worker 3, asked of worker 1 for worker 5; worker 1 gives up and
    // worker 3 sends it instead.
    let mut h = x_copied_then_sent(0, 1, 2);
    h.transfer_failed(1, 0, "10.0.0.1:1005", "refused");
    h.take();
    assert_eq!(h.s.moves.redirected.len(), 1);
    // The target goes: nothing waits there any more.
    h.s.on_close(5);
    h.take();
    assert!(
        h.s.moves.redirected.is_empty(),
        "redirection to a lost worker kept"
    );

    // The sender asked instead goes: the transfer is sent again from X's owner, afresh.
    let mut h = x_copied_then_sent(0, 1, 2);
    h.transfer_failed(1, 0, "10.0.0.1:1005", "refused");
    h.take();
    h.s.on_close(3);
    let seen = h.take();
    let send = seen.of(1, 2);
    assert_eq!(
        (send.len(), send[0].id, send[0].address.as_deref()),
        (1, Some(0), Some("10.0.0.1:1005")),
        "sent again from X's owner"
    );
    assert!(
        h.s.moves.redirected.is_empty(),
        "redirection through a lost worker kept"
    );
    // Its owner gives up again: no other copy is left, the merge fails naming X.
    h.transfer_failed(1, 0, "10.0.0.1:1005", "refused again");
    let seen = h.take();
    assert_eq!(seen.error_ids(2), vec![Some(4)]);
}
