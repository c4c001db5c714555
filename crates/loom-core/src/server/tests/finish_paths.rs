//! The one FINISHED path in its common case (a quiet read, a plain task: `ReadCtx::plain`)
//! against its rare case (every read's context forced not quiet, so each rare thing is
//! looked at per task): the same events give the same frames and the same counts.

use super::*;

/// FINISHED in the layout workers send (type, id, size), as a worker read scans it.
fn plain_finished(out: &mut Vec<u8>, id: i32, size: u64) {
    finished_with_length(out, id, size, None);
}

/// A FINISHED frame with `length` (an array's; `Some` takes the general reader's path).
fn finished_with_length(out: &mut Vec<u8>, id: i32, size: u64, length: Option<u64>) {
    push_frame(
        out,
        &WorkerResponse {
            r#type: worker_response::Type::Finished as i32,
            id,
            size: Some(size),
            length,
            error_msg: None,
        },
    );
}

/// Two workers (conns 1 and 3) and a client (2): a plan of merges of consts under an array
/// result, a chain, a 1-cpu task and a task without consumers; a second plan using the first
/// one's result (another segment); every TASK answered in one read per worker and round;
/// the first result released at the end. Returns what the server wrote, round by round, and
/// the final counts.
fn run(general_only: bool) -> (Vec<String>, String, (u64, u64)) {
    let mut h = H::new();
    h.s.general_only = general_only;
    h.worker(1, 2);
    h.worker(3, 1);
    h.client(2);
    h.take();
    let mut tasks = Vec::new();
    let mut merges = Vec::new();
    for i in 0..20 {
        let a = tasks.len() as i32;
        tasks.push(task(CONST, format!("{i}").as_bytes(), &[], false));
        tasks.push(task(CONST, b"x", &[], false));
        tasks.push(task(MERGE, b"", &[a, a + 1], false));
        merges.push(a + 2);
    }
    let array = tasks.len() as i32;
    tasks.push(task(ARRAY, b"", &merges, true));
    let mut prev = tasks.len() as i32;
    tasks.push(task(CONST, b"c", &[], false));
    for _ in 0..10 {
        tasks.push(task(MERGE, b"", &[prev], false));
        prev = tasks.len() as i32 - 1;
    }
    tasks.push(with_cpus(task(MERGE, b"", &[prev, 0], true), 0));
    let n1 = tasks.len() as i32;
    h.send(2, &plan_req(0, tasks, &[1]));
    let mut log = Vec::new();
    let mut round = 0;
    loop {
        let seen = h.take();
        log.push(format!(
            "{:?} {:?}",
            sorted(&seen.cmds),
            sorted(&seen.resps)
        ));
        if round == 1 {
            // A later plan using the first one's result while it runs.
            let later = vec![task(MERGE, b"", &[array, 0], true)];
            h.send(2, &plan_req(n1, later, &[]));
        }
        round += 1;
        let mut any = false;
        for conn in [1, 3] {
            let mut buf = Vec::new();
            for id in seen.tasks(conn) {
                plain_finished(&mut buf, id, 10 + id as u64);
            }
            if !buf.is_empty() {
                any = true;
                h.s.on_data(conn, &buf);
            }
        }
        if !any && round > 2 {
            break;
        }
    }
    h.send(2, &req(client_request::Type::Release, Some(array)));
    let seen = h.take();
    log.push(format!(
        "{:?} {:?}",
        sorted(&seen.cmds),
        sorted(&seen.resps)
    ));
    let released = seen.removes(1).len() + seen.removes(3).len();
    assert_eq!(released, 1, "the released result is removed from its owner");
    let snap = h.s.snapshot();
    let counts = format!(
        "{:?} {:?} {:?}",
        snap.tasks,
        snap.workers
            .iter()
            .map(|w| (w.objects, w.bytes, w.running, w.busy_cpus))
            .collect::<Vec<_>>(),
        snap.clients.iter().map(|c| c.objects).collect::<Vec<_>>()
    );
    (log, counts, (h.s.plain_finished, h.s.common_finished))
}

fn sorted<T: std::fmt::Debug>(m: &HashMap<ConnId, Vec<T>>) -> Vec<(ConnId, String)> {
    let mut v: Vec<_> = m.iter().map(|(c, x)| (*c, format!("{x:?}"))).collect();
    v.sort();
    v
}

#[test]
fn common_and_rare_finished_cases_agree() {
    let (quiet_log, quiet_counts, (taken, common)) = run(false);
    let (general_log, general_counts, none) = run(true);
    assert_eq!(none, (0, 0), "with no quiet read no FINISHED is plain");
    // The first plan's tasks until the later plan consumes one of its results (a cross-plan
    // consumer: no quiet read from then on).
    assert!(taken >= 40, "the common case was taken ({taken} times)");
    // Light tasks that are no result, in those reads: the common instance of the handler.
    assert!(
        common >= 40,
        "the common instance was taken ({common} times)"
    );
    assert_eq!(quiet_log.len(), general_log.len(), "rounds");
    for (k, (q, g)) in quiet_log.iter().zip(&general_log).enumerate() {
        assert_eq!(q, g, "round {k}");
    }
    assert_eq!(quiet_counts, general_counts);
}

/// The counters a read's FINISHED frames change on their worker (tasks running there, objects
/// and bytes it holds, cpus booked) are those of each frame: after a read that finishes
/// light tasks in the plain layout, a 1-cpu task, a task in another layout (read one frame at
/// a time) and an unknown id, the worker's status counts exactly what is still running and
/// what it holds.
#[test]
fn a_reads_finished_frames_count_on_their_worker() {
    let mut h = H::new();
    h.worker(1, 2);
    h.client(2);
    h.take();
    let mut tasks: Vec<_> = (0..5)
        .map(|i| task(CONST, format!("{i}").as_bytes(), &[], true))
        .collect();
    tasks.push(with_cpus(task(CONST, b"heavy", &[], true), 0));
    h.send(2, &plan_req(0, tasks, &[1]));
    let sent = h.take().tasks(1);
    assert_eq!(sent.len(), 6, "every task runs at once: {sent:?}");
    let status = |h: &H| {
        let w = &h.s.snapshot().workers[0];
        (w.running, w.objects, w.bytes, w.busy_cpus)
    };
    assert_eq!(status(&h), (6, 0, 0, 1));
    // Light tasks 0, 1, 3 plain, 2 in another layout, the 1-cpu task 5, an unknown id (a
    // residual answer: REMOVE, nothing counted); task 4 still runs.
    let mut read = Vec::new();
    plain_finished(&mut read, sent[0], 100);
    plain_finished(&mut read, sent[1], 20);
    finished_with_length(&mut read, sent[2], 3, Some(0));
    plain_finished(&mut read, 1_000_000, 5);
    plain_finished(&mut read, sent[3], 4000);
    plain_finished(&mut read, sent[5], 1);
    h.s.on_data(1, &read);
    assert_eq!(h.take().removes(1), vec![1_000_000]);
    assert_eq!(status(&h), (1, 5, 4124, 0));
    let mut read = Vec::new();
    plain_finished(&mut read, sent[4], 6);
    h.s.on_data(1, &read);
    assert_eq!(status(&h), (0, 6, 4130, 0));
}

/// A chain finished in one read (its first object freed by the second task in the same read)
/// leaves its worker holding exactly the chain's last object: the objects a read adds and the
/// objects it frees on that worker are counted in the order they happen (with the adds
/// deferred to the read's end, the free of an object held since earlier in the same read was
/// clamped at zero and the worker showed two objects).
#[test]
fn a_chain_finished_in_one_read_leaves_one_object_on_its_worker() {
    let mut h = H::new();
    h.worker(1, 1);
    h.client(2);
    h.take();
    let tasks = vec![
        task(CONST, b"a", &[], false),
        task(MERGE, b"", &[0], false),
        task(MERGE, b"", &[1], true),
    ];
    h.send(2, &plan_req(0, tasks, &[]));
    let sent = h.take().tasks(1);
    assert_eq!(sent.len(), 3, "the chain is sent at once: {sent:?}");
    let mut read = Vec::new();
    for (&id, size) in sent.iter().zip([10, 20, 40]) {
        plain_finished(&mut read, id, size);
    }
    h.s.on_data(1, &read);
    let mut removed = h.take().removes(1);
    removed.sort();
    assert_eq!(removed, sent[..2].to_vec(), "the first two are freed");
    let w = &h.s.snapshot().workers[0];
    assert_eq!((w.running, w.objects, w.bytes), (0, 1, 40));
}

/// A plan whose last live task is freed by a plain FINISHED (its result released while it
/// ran) is collected after that read: its segment is dropped and the plan is done.
#[test]
fn a_plan_emptied_by_a_plain_finished_is_collected() {
    let mut h = H::new();
    h.worker(1, 1);
    h.client(2);
    h.take();
    let tasks = vec![
        task(CONST, b"a", &[], false),
        task(CONST, b"b", &[], false),
        task(MERGE, b"", &[0, 1], true),
    ];
    h.send(2, &plan_req(0, tasks, &[]));
    let sent = h.take().tasks(1);
    assert_eq!(sent.len(), 3, "the merge is sent with its inputs: {sent:?}");
    h.send(2, &req(client_request::Type::Release, Some(2)));
    h.take();
    let mut read = Vec::new();
    for &id in &sent {
        plain_finished(&mut read, id, 8);
    }
    h.s.on_data(1, &read);
    let mut removed = h.take().removes(1);
    removed.sort();
    assert_eq!(removed, sent);
    assert_eq!(h.s.plain_finished, 3, "read as plain");
    assert!(h.s.graph.segs.is_empty(), "the plan's segment is dropped");
    assert_eq!(h.s.snapshot().plans[0].state, "done");
}

/// A read whose first FINISHED leaves an object on its worker and whose next FINISHED frees
/// it on the general path (which counts at once) leaves the worker holding exactly the second
/// task's object and bytes: the read's counts so far are applied before anything that counts
/// at once. The second FINISHED takes the general path as a frame in another layout (a
/// length) after a plain one, or with every read forced rare. (Without that, the free of the
/// first object's 100 bytes was clamped at zero before their add was applied, and the worker
/// showed 100 bytes, or two objects.)
#[test]
fn a_general_free_after_finished_frames_of_one_read_counts_in_order() {
    for general_only in [false, true] {
        let mut h = H::new();
        h.s.general_only = general_only;
        h.worker(1, 1);
        h.client(2);
        h.take();
        let tasks = vec![task(CONST, b"a", &[], false), task(MERGE, b"", &[0], true)];
        h.send(2, &plan_req(0, tasks, &[]));
        let sent = h.take().tasks(1);
        assert_eq!(sent.len(), 2, "the chain is sent at once: {sent:?}");
        let mut read = Vec::new();
        plain_finished(&mut read, sent[0], 100);
        if general_only {
            plain_finished(&mut read, sent[1], 10);
        } else {
            finished_with_length(&mut read, sent[1], 10, Some(3));
        }
        h.s.on_data(1, &read);
        assert_eq!(h.take().removes(1), vec![sent[0]], "the const is freed");
        assert_eq!(h.s.plain_finished, !general_only as u64, "plain frames");
        let w = &h.s.snapshot().workers[0];
        assert_eq!(
            (w.running, w.objects, w.bytes),
            (0, 1, 10),
            "general only: {general_only}"
        );
    }
}

/// One read whose FINISHED frames alternate between two plans (two segments) and free objects
/// in both: each plan's inputs are freed in their own segment (a read gathers the frees of one
/// segment at a time, and a FINISHED in the other frees them first), with one REMOVE each, the
/// right counts per segment and on the worker.
#[test]
fn a_read_freeing_in_two_plans_frees_each_in_its_own_segment() {
    let mut h = H::new();
    h.worker(1, 1);
    h.client(2);
    h.take();
    // Ids base, base + 1 and the merge of both.
    let plan = |base: i32| {
        vec![
            task(CONST, b"a", &[], false),
            task(CONST, b"b", &[], false),
            task(MERGE, b"", &[base, base + 1], true),
        ]
    };
    h.send(2, &plan_req(0, plan(0), &[]));
    h.send(2, &plan_req(3, plan(3), &[]));
    let mut sent = h.take().tasks(1);
    sent.sort();
    assert_eq!(sent.len(), 6, "both plans run at once: {sent:?}");
    assert_eq!(h.s.graph.segs.len(), 2, "a segment per plan");
    let (a, b) = (&sent[..3], &sent[3..]);
    // The frames alternate between the plans: A's merge frees A's consts, then B's merge,
    // in the other segment, frees B's (A's frees are freed first, in A's segment).
    let mut read = Vec::new();
    for (id, size) in [
        (a[0], 1),
        (b[0], 2),
        (a[1], 4),
        (b[1], 8),
        (a[2], 16),
        (b[2], 32),
    ] {
        plain_finished(&mut read, id, size);
    }
    h.s.on_data(1, &read);
    assert_eq!(h.s.plain_finished, 6, "read as plain");
    assert_eq!(h.take().removes(1), vec![a[0], a[1], b[0], b[1]]);
    for seg in h.s.graph.segs.iter() {
        assert_eq!(
            (
                seg.counts.get(segment::TaskState::Freed),
                seg.counts.get(segment::TaskState::Finished),
                seg.live
            ),
            (2, 1, 1),
            "two consts freed and the merge held in segment of base {:?}",
            seg.base
        );
    }
    let w = &h.s.snapshot().workers[0];
    assert_eq!((w.running, w.objects, w.bytes), (0, 2, 48));
}
