//! Placement: cpu accounting and overbooking, light tasks, locality and transfers, reference counts, pipelining.

use super::*;
use crate::server::segment::{Segment, TaskState};

#[test]
fn cpu_accounting() {
    // One worker with 1 cpu and three 1-cpu tasks: one runs and one waits queued on the worker
    // (bounded overbooking hides the round trip); the third waits on the server.
    let mut h = setup(1);
    let t = |cfg: &[u8]| with_cpus(task(RUN, cfg, &[], true), 0);
    h.send(2, &plan_req(0, vec![t(b"a"), t(b"b"), t(b"c")], &[1]));
    assert_eq!(h.take().tasks(1), vec![0, 1]);
    h.fin(1, 0, 1);
    assert_eq!(h.take().tasks(1), vec![2]);
    h.respond(1, worker_response::Type::Failed, 1, 0, 0);
    assert!(h.take().tasks(1).is_empty());
    assert_eq!((h.s.workers[W0].free_cpus, h.s.workers[W0].over), (0, 0));
    h.fin(1, 2, 1);
    assert_eq!((h.s.workers[W0].free_cpus, h.s.workers[W0].over), (1, 0));

    // Four 4-cpu tasks on 4 cpus: never more than one running plus one queued.
    let mut h = setup(4);
    let t4 = |cfg: &[u8]| with_cpus(task(RUN, cfg, &[], true), 0);
    h.send(
        2,
        &plan_req(0, vec![t4(b"a"), t4(b"b"), t4(b"c"), t4(b"d")], &[4]),
    );
    let seen = h.take();
    assert_eq!(seen.tasks(1), vec![0, 1]);
    assert_eq!(seen.of(1, 1)[0].n_cpus, Some(4));
    h.fin(1, 0, 1);
    assert_eq!(h.take().tasks(1), vec![2]);
    // While two 4-cpu tasks are booked, a 1-cpu task finds no room.
    let t1 = |cfg: &[u8]| with_cpus(task(RUN, cfg, &[], true), 0);
    h.send(
        2,
        &plan_req(
            4,
            vec![t1(b"a"), t1(b"b"), t1(b"c"), t1(b"d"), t1(b"e")],
            &[1],
        ),
    );
    assert!(
        h.take().tasks(1).is_empty(),
        "the 4-cpu tasks hold all cpus and the overbooking allowance"
    );
    h.fin(1, 1, 1);
    let got = h.take().tasks(1);
    assert!(!got.is_empty(), "a finish makes room");
    let w = &h.s.workers[W0];
    assert!(w.booked_cpus() <= 2 * w.cpus, "booked {}", w.booked_cpus());
}

#[test]
fn programs_queue_by_the_workers_program_throughput() {
    // A worker that ends programs quickly is given a deeper queue of them (its `program_over`,
    // measured from its FINISHED programs): 1 running + 3 queued on 1 cpu here.
    let mut h = setup(1);
    h.s.workers[W0].program_over = 3;
    let t = |cfg: &[u8]| with_cpus(task(RUN, cfg, &[], true), 0);
    let plan: Vec<Task> = [b"a", b"b", b"c", b"d", b"e", b"f"]
        .iter()
        .map(|c| t(*c))
        .collect();
    h.send(2, &plan_req(0, plan, &[1]));
    assert_eq!(h.take().tasks(1), vec![0, 1, 2, 3]);
    h.fin(1, 0, 1);
    assert_eq!(h.take().tasks(1), vec![4]);
    let w = &h.s.workers[W0];
    assert_eq!((w.free_cpus, w.over), (0, 3));
}

#[test]
fn function_calls_queue_deeper_on_a_worker() {
    // One-cpu `loom/js/call`s overbook POOLED_OVERBOOK x cpus (the worker's function-call pool
    // takes many per message); a program behind them still waits for room.
    let mut h = H::new();
    let types: Vec<&str> = ORIGINAL_TASK_TYPES
        .iter()
        .chain(crate::symbols::JS_TASK_TYPES.iter())
        .copied()
        .collect();
    h.worker_with_types(1, 1, &types);
    h.client(2);
    h.take();
    let call = h.s.symbols.id("loom/js/call").unwrap();
    let n = workers::POOLED_OVERBOOK as usize + 10;
    let mut plan: Vec<Task> = (0..n)
        .map(|_| with_cpus(task(call, b"", &[], true), 0))
        .collect();
    plan.push(with_cpus(task(RUN, b"p", &[], true), 0));
    h.send(2, &plan_req(0, plan, &[1]));
    let sent = h.take().tasks(1);
    assert_eq!(sent.len(), 1 + workers::POOLED_OVERBOOK as usize);
    h.fin(1, 0, 1);
    assert_eq!(h.take().tasks(1), vec![sent.len() as i32]);
    let w = &h.s.workers[W0];
    assert_eq!((w.free_cpus, w.over), (0, workers::POOLED_OVERBOOK));
}

#[test]
fn light_tasks_and_cap() {
    let mut h = setup(1);
    let n = LIGHT_CAP as usize + 10;
    let tasks: Vec<Task> = (0..n).map(|_| task(CONST, b"x", &[], true)).collect();
    h.send(2, &plan_req(0, tasks, &[]));
    let got = h.take().tasks(1);
    assert_eq!(got.len(), LIGHT_CAP as usize);
    for id in 0..5 {
        h.fin(1, id, 1);
    }
    let seen = h.take();
    assert_eq!(seen.tasks(1).len(), 5);
    assert_eq!(seen.finished(2), vec![0, 1, 2, 3, 4]);
}

#[test]
fn locality_and_transfers() {
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    // Two results with no consumer in their plan: spread across workers.
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"big", &[], true),
                task(CONST, b"small", &[], true),
            ],
            &[],
        ),
    );
    let seen = h.take();
    assert_eq!(seen.tasks(1), vec![0]);
    assert_eq!(seen.tasks(3), vec![1]);
    h.fin(1, 0, 1_000_000);
    h.fin(3, 1, 10);
    h.take();
    // A merge of both (a later plan) goes where the big input is; the small one is sent.
    h.send(2, &plan_req(2, vec![task(MERGE, b"", &[1, 0], true)], &[]));
    let seen = h.take();
    assert_eq!(seen.tasks(1), vec![2], "goes where the big input is");
    let send = seen.of(3, 2);
    assert_eq!(send.len(), 1);
    assert_eq!(
        (send[0].id, send[0].address.as_deref()),
        (Some(1), Some("10.0.0.1:1001"))
    );
    h.respond(1, worker_response::Type::Transfered, 1, 0, 0);
    h.fin(1, 2, 1_000_010);
    let seen = h.take();
    assert_eq!(seen.finished(2), vec![2]);
    assert_eq!(h.s.counters.transfers, 1);
}

#[test]
fn producers_of_one_consumer_meet_on_one_worker() {
    // Input-less producers of one consumer (siblings) go to the worker of the first one placed,
    // which pipelines the consumer there: no input moves. Each pair still goes to the least
    // loaded worker, so pairs alternate.
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    h.send(2, &plan_req(0, two_merges([3, 4]), &[]));
    let seen = h.take();
    assert_eq!(
        seen.tasks(1),
        vec![0, 1, 2],
        "consts and their merge, pipelined"
    );
    assert_eq!(seen.tasks(3), vec![3, 4, 5]);
    for id in 0..3 {
        h.fin(1, id, 1);
    }
    for id in 3..6 {
        h.fin(3, id, 1);
    }
    assert_eq!(h.take().finished(2), vec![2, 5]);
    assert_eq!(h.s.counters.transfers, 0);

    // The same through `pick` (a traced plan is placed task by task).
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    let dir = std::env::temp_dir().join(format!("loom-sibling-trace-{}", std::process::id()));
    h.s.trace_start(dir.to_str().unwrap().as_bytes());
    assert!(h.s.trace.is_some());
    h.send(2, &plan_req(0, two_merges([3, 4])[..3].to_vec(), &[]));
    let seen = h.take();
    assert_eq!(seen.tasks(1), vec![0, 1, 2]);
    assert!(seen.tasks(3).is_empty());
    drop(h);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn release_and_refcounts() {
    let mut h = setup(1);
    h.send(2, &plan_req(0, vec![task(CONST, b"a", &[], true)], &[]));
    h.take();
    h.fin(1, 0, 1);
    assert_eq!(h.take().finished(2), vec![0]);
    // A later plan uses the result; releasing it keeps it until the consumer finishes.
    h.send(2, &plan_req(1, vec![task(MERGE, b"", &[0, 0], true)], &[]));
    let seen = h.take();
    assert_eq!(seen.tasks(1), vec![1]);
    assert_eq!(seen.of(1, 1)[0].task_inputs, vec![0, 0]);
    h.send(2, &req(client_request::Type::Release, Some(0)));
    assert!(h.take().removes(1).is_empty());
    h.send(2, &req(client_request::Type::Release, Some(0)));
    assert_eq!(h.take().errors(2), vec!["Task is not result"]);
    h.fin(1, 1, 2);
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![0]);
    assert_eq!(seen.finished(2), vec![1]);
    h.send(2, &req(client_request::Type::Release, Some(0)));
    h.send(2, &req(client_request::Type::Release, Some(-3)));
    assert_eq!(h.take().errors(2), vec!["Invalid id: 0", "Invalid id: -3"]);
    // A result that is not needed by anything and released before finishing.
    h.send(2, &plan_req(2, vec![task(CONST, b"a", &[], true)], &[]));
    h.take();
    h.send(2, &req(client_request::Type::Release, Some(2)));
    h.fin(1, 2, 1);
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![2]);
    assert!(seen.finished(2).is_empty());
    h.send(2, &req(client_request::Type::Release, Some(1)));
    h.take();
    assert_eq!(stats(&mut h, 2), (1, 0));
    // Unreachable tasks are never computed.
    h.send(
        2,
        &plan_req(
            3,
            vec![task(CONST, b"u", &[], false), task(CONST, b"r", &[], true)],
            &[],
        ),
    );
    assert_eq!(h.take().tasks(1), vec![4]);
}

#[test]
fn chains_are_pipelined_and_a_failure_frees_their_slots() {
    let mut h = setup(1);
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"a", &[], false),
                task(MERGE, b"", &[0], false),
                task(MERGE, b"", &[1], false),
                task(MERGE, b"", &[2], true),
            ],
            &[],
        ),
    );
    // The whole chain goes out in one batch; the worker runs it without a round trip per task.
    assert_eq!(h.take().tasks(1), vec![0, 1, 2, 3]);
    assert_eq!(h.s.workers[W0].light, 4);
    h.fin(1, 0, 1);
    h.respond(1, worker_response::Type::Failed, 1, 0, 0);
    let seen = h.take();
    let failed: Vec<_> = seen.resp(2).into_iter().filter(|r| r.r#type == 3).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, Some(3));
    assert_eq!(failed[0].error.as_ref().unwrap().id, Some(1));
    assert_eq!(
        h.s.workers[W0].light, 0,
        "the dependants sent early will never start: their slots are freed"
    );
    assert!(seen.tasks(1).is_empty());
}

/// Pipelining walks every pipelined task that has consumers of its own, the last one sent
/// first (a fan-out whose branches go on: each branch's next task follows in the same batch).
#[test]
fn branches_are_pipelined_last_in_first_out() {
    let mut h = setup(1);
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"a", &[], false),
                task(MERGE, b"", &[0], false),
                task(MERGE, b"", &[0], false),
                task(MERGE, b"", &[1], true),
                task(MERGE, b"", &[2], true),
                task(MERGE, b"", &[4], true),
            ],
            &[],
        ),
    );
    // 0's consumers 1 and 2 go out, then 2's branch (4, then 5), then 1's (3).
    assert_eq!(h.take().tasks(1), vec![0, 1, 2, 4, 5, 3]);
    assert_eq!(h.s.workers[W0].light, 6);
}

/// The consumer index the intake links in one pass over the inputs is the one built from the
/// inputs: every in-plan edge once, consumers ascending, also for tasks the walk does not plan
/// (unreachable from a result, or loaded from their checkpoint).
#[test]
fn consumers_linked_while_planning() {
    let dir = std::env::temp_dir().join(format!("loom-cons-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for load in [false, true] {
        let mut h = setup(1);
        let mut loaded = task(MERGE, b"", &[0, 1], false);
        loaded.checkpoint_path = Some(dir.to_str().unwrap().into());
        let mut p = plan_req(
            0,
            vec![
                task(CONST, b"a", &[], false),
                task(CONST, b"b", &[], false),
                loaded,
                task(MERGE, b"", &[0, 0], false), // unreachable
                task(MERGE, b"", &[2, 1], true),
                task(MERGE, b"", &[3], false), // unreachable
                task(MERGE, b"", &[0], true),
            ],
            &[],
        );
        p.load_checkpoints = Some(load);
        h.send(2, &p);
        assert!(h.take().errors(2).is_empty());
        let seg = h.s.graph.segs.iter().next().unwrap();
        let n = seg.n as usize;
        for d in 0..n {
            let want: Vec<TaskId> = (0..n)
                .flat_map(|i| {
                    let hits = seg
                        .inputs(i)
                        .iter()
                        .filter(|&&x| seg.offset_of(x) == Some(d));
                    hits.map(move |_| seg.id(i))
                })
                .collect();
            assert_eq!(seg.consumers(d), &want[..], "task {d}, load {load}");
        }
        assert_eq!(seg.consumers(0).len(), 4);
        assert_eq!(seg.cons_off[n] as usize, seg.cons.len());
        assert_narrow_flags(seg);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every task of `seg` has [`TaskFlags::NARROW_CONSUMER`] exactly when one of its consumers
/// there takes at most `MAX_PIPELINE_INPUTS` inputs (pipelining walks only those tasks).
fn assert_narrow_flags(seg: &crate::server::segment::Segment) {
    use crate::server::segment::{TaskFlags, MAX_PIPELINE_INPUTS};
    for d in 0..seg.n as usize {
        let want = seg.consumers(d).iter().any(|&c| {
            let off = seg.offset_of(c).unwrap();
            seg.inputs(off).len() <= MAX_PIPELINE_INPUTS
        });
        let has = seg.tasks[d].flags.has(TaskFlags::NARROW_CONSUMER);
        assert_eq!(has, want, "task {d}");
    }
}

/// The intake marks the producers of narrow consumers (8 inputs or fewer) on each of its
/// linking paths: the usual plan, one with labels, one with a forward reference; a consumer
/// of 9 inputs leaves its producers unmarked, and is not pipelined, one of 8 is.
#[test]
fn producers_of_narrow_consumers_are_marked_while_planning() {
    for variant in ["plain", "labels", "forward"] {
        let mut h = setup(1);
        let c = |cfg: &[u8]| task(CONST, cfg, &[], false);
        // 0..9 consts; 9: merge of 0..8 (8 inputs); 10: merge of 0..9 (9); 11: merge of 9;
        // 12: unreachable merge of 10 and 11; 13: a const taken by the forward reference.
        let mut tasks: Vec<_> = (0..9).map(|i| c(format!("{i}").as_bytes())).collect();
        tasks.push(task(MERGE, b"", &(0..8).collect::<Vec<_>>(), true));
        tasks.push(task(MERGE, b"", &(0..9).collect::<Vec<_>>(), true));
        tasks.push(task(MERGE, b"", &[9], true));
        tasks.push(task(MERGE, b"", &[10, 11], false));
        match variant {
            "labels" => tasks[11].label = Some("m".into()),
            "forward" => tasks[11].input_ids = vec![9, 13],
            _ => {}
        }
        tasks.push(c(b"f"));
        h.send(2, &plan_req(0, tasks, &[]));
        let seen = h.take();
        assert!(seen.errors(2).is_empty(), "{variant}");
        let seg = h.s.graph.segs.iter().next().unwrap();
        assert_narrow_flags(seg);
        let narrow = |d: usize| {
            seg.tasks[d]
                .flags
                .has(crate::server::segment::TaskFlags::NARROW_CONSUMER)
        };
        assert!(narrow(0) && narrow(7) && narrow(9), "{variant}");
        assert!(!narrow(8), "only a consumer of 9 inputs: {variant}");
        assert!(
            narrow(10) && narrow(11),
            "the unreachable consumer: {variant}"
        );
        // The 8-input merge (and its consumer) went out with the consts, pipelined; the
        // 9-input one waits for its inputs.
        let sent = seen.tasks(1);
        assert!(
            sent.contains(&9) && sent.contains(&11),
            "{variant}: {sent:?}"
        );
        assert!(!sent.contains(&10), "{variant}: {sent:?}");
    }
}

/// The usual plan is planned by the pass that links its consumers, a plan with a label by the
/// walk from its results; both plan alike: for random plans without forward references
/// (results, tasks no result needs, 1-cpu tasks, inputs from an earlier plan's finished and
/// unfinished results), every task record (state, flags, counts), consumer list, state count,
/// earlier input's references and consumers, TASK sent and queued task is the same, whether
/// or not the plan's last and middle tasks have a label (then they are read by the generic
/// reader after the short path resolved their inputs). A task no result needs stays UNPLANNED.
#[test]
fn the_usual_plan_is_planned_as_the_walk_from_its_results_plans_it() {
    let mut rnd = 0x9e37_79b9_u32;
    let mut next = move |m: u32| {
        rnd ^= rnd << 13;
        rnd ^= rnd >> 17;
        rnd ^= rnd << 5;
        rnd % m
    };
    // The worker runs no merge: merges stay queued and other tasks run, so both show.
    let types: Vec<&str> = ORIGINAL_TASK_TYPES
        .iter()
        .copied()
        .filter(|t| *t != "loom/data/merge")
        .collect();
    let mut unplanned = 0;
    for round in 0..60 {
        // Earlier results 0..6, of which 0..3 finished.
        let earlier: Vec<Task> = (0..6).map(|_| task(CONST, b"e", &[], true)).collect();
        let n = 1 + next(30) as i32;
        let mut tasks: Vec<Task> = (0..n)
            .map(|t| {
                let ins: Vec<i32> = (0..next(4))
                    .filter_map(|_| match next(5) {
                        0 => Some(next(6) as i32),
                        _ if t > 0 => Some(100 + next(t as u32) as i32),
                        _ => None,
                    })
                    .collect();
                let ty = if ins.is_empty() { CONST } else { MERGE };
                let t = task(ty, b"", &ins, next(4) == 0);
                if ins.is_empty() && next(4) == 0 {
                    with_cpus(task(RUN, b"r", &[], t.result == Some(true)), 0)
                } else {
                    t
                }
            })
            .collect();
        if round % 2 == 0 {
            // Every task needed: each one without a consumer is a result.
            for t in 0..n as usize {
                let used = tasks
                    .iter()
                    .any(|c| c.input_ids.contains(&(100 + t as i32)));
                if !used {
                    tasks[t].result = Some(true);
                }
            }
        }
        let seen: Vec<String> = [false, true]
            .into_iter()
            .map(|labelled| {
                let mut h = H::new();
                h.worker_with_types(1, 1, &types);
                h.client(2);
                h.send(2, &plan_req(0, earlier.clone(), &[]));
                for id in h.take().tasks(1).into_iter().filter(|&id| id < 3) {
                    h.fin(1, id, 1);
                }
                h.take();
                let mut plan = tasks.clone();
                if labelled {
                    // Read by the generic reader after the short path took its inputs.
                    let last = plan.len() - 1;
                    plan[last].label = Some("last".into());
                    plan[last / 2].label = Some("middle".into());
                }
                h.send(2, &plan_req(100, plan, &[1]));
                let out = h.take();
                assert!(out.errors(2).is_empty(), "{:?}", out.errors(2));
                let s = &h.s;
                let segs: Vec<&Segment> = s.graph.segs.iter().collect();
                let first = segs[0];
                // A plan of which no result needs anything is collected at once.
                let Some(seg) = segs.iter().find(|g| g.cbase == Some(100)) else {
                    unplanned += tasks.len();
                    return format!("collected, sent {:?}", out.tasks(1));
                };
                assert_eq!(seg.groups.is_some(), labelled, "the labelled plan is grouped");
                let n = seg.n as usize;
                unplanned += (0..n)
                    .filter(|&t| seg.tasks[t].state == TaskState::Unplanned)
                    .count();
                let records: Vec<String> = (0..n)
                    .map(|t| format!("{:?} {:?}", seg.tasks[t], seg.consumers(t)))
                    .collect();
                let counts: Vec<u32> = (0..7u8)
                    .map(|k| seg.counts.get(state_no(k)))
                    .collect();
                let earlier: Vec<String> = (0..6)
                    .map(|t| {
                        let id = first.id(t);
                        format!("{:?} {:?}", first.tasks[t], s.graph.extra_cons.get(&id))
                    })
                    .collect();
                let queued = ready_queues(s);
                format!(
                    "{records:?}\n{counts:?} live {}\n{earlier:?}\nsent {:?}\nqueued {queued:?} parked {:?}",
                    seg.live,
                    out.tasks(1),
                    s.ready.parked()
                )
            })
            .collect();
        assert_eq!(seen[0], seen[1], "round {round}: {:?}", tasks);
    }
    assert!(unplanned > 0, "some plans have tasks no result needs");
}

/// The usual plan's forward pass writes each task's consumers into places it does not zero
/// first: every task's consumer list is its in-plan consumers, in plan order, one per input
/// naming it (a task taking it twice is listed twice), and nothing else, also when inputs
/// from an earlier plan (which take no place) come between them. Fails when a place is left
/// unwritten or the list is cut at another length.
#[test]
fn the_forward_pass_lists_every_consumer_once_per_input() {
    let mut h = H::new();
    h.worker(1, 4);
    h.client(2);
    let earlier = (0..2).map(|_| task(CONST, b"e", &[], true)).collect();
    h.send(2, &plan_req(0, earlier, &[]));
    h.take();
    let plan = vec![
        task(CONST, b"a", &[], false),           // 100
        task(MERGE, b"", &[0, 100], false),      // 101
        task(MERGE, b"", &[100, 1, 100], false), // 102: takes 100 twice
        task(MERGE, b"", &[101, 0, 102], false), // 103
        task(MERGE, b"", &[1, 103, 100], true),  // 104
    ];
    let inputs: Vec<Vec<i32>> = plan.iter().map(|t| t.input_ids.clone()).collect();
    h.send(2, &plan_req(100, plan, &[4]));
    let out = h.take();
    assert!(out.errors(2).is_empty(), "{:?}", out.errors(2));
    let seg =
        h.s.graph
            .segs
            .iter()
            .find(|g| g.cbase == Some(100))
            .unwrap();
    for d in 0..5 {
        let want: Vec<TaskId> = (0..5)
            .flat_map(|c| {
                let n = inputs[c].iter().filter(|&&x| x == 100 + d as i32).count();
                std::iter::repeat_n(seg.base.plus(c), n)
            })
            .collect();
        assert_eq!(seg.consumers(d), &want[..], "consumers of task {}", 100 + d);
    }
    assert_eq!(seg.cons.len(), 7, "one place per in-plan input");
}

/// A task's wait for inputs from an earlier plan is counted as the plan is read (when they
/// are resolved), the rest by the usual plan's forward pass: the usual plan so planned waits,
/// readies and queues as the walk from its results plans the same plan with a label (which
/// does not use those counts). Here the tasks the generic reader takes (1-cpu tasks, in the
/// middle and last) take finished and unfinished results of an earlier plan, alone or with
/// in-plan inputs, and results sit in the middle.
#[test]
fn waits_for_earlier_plans_counted_as_read_are_the_walks() {
    let types: Vec<&str> = ORIGINAL_TASK_TYPES
        .iter()
        .copied()
        .filter(|t| *t != "loom/data/merge")
        .collect();
    let heavy = |ins: &[i32], result: bool| with_cpus(task(RUN, b"r", ins, result), 0);
    // Earlier results 0, 1 (finished) and 2 (not).
    let plan = vec![
        heavy(&[0], false),                 // 100: READY (heavy), its input finished
        heavy(&[2], false),                 // 101: waits for 2
        task(CONST, b"c", &[], true),       // 102: a result in the middle
        heavy(&[102, 1, 0], false),         // 103: waits for 102 only
        task(MERGE, b"", &[2, 102], false), // 104: usual reader, then 2 resolved
        heavy(&[2, 2, 101], false),         // 105: waits for 2 twice and 101
        task(MERGE, b"", &[100, 103, 104, 105], true),
        heavy(&[1], true), // 107: last, READY (heavy)
    ];
    let seen: Vec<String> = [false, true]
        .into_iter()
        .map(|labelled| {
            let mut h = H::new();
            h.worker_with_types(1, 4, &types);
            h.client(2);
            let earlier = (0..3).map(|_| task(CONST, b"e", &[], true)).collect();
            h.send(2, &plan_req(0, earlier, &[]));
            for id in h.take().tasks(1).into_iter().filter(|&id| id < 2) {
                h.fin(1, id, 1);
            }
            h.take();
            let mut plan = plan.clone();
            if labelled {
                plan[3].label = Some("middle".into());
            }
            h.send(2, &plan_req(100, plan, &[1]));
            let out = h.take();
            assert!(out.errors(2).is_empty(), "{:?}", out.errors(2));
            let s = &h.s;
            let seg = s.graph.segs.iter().find(|g| g.cbase == Some(100)).unwrap();
            let n = seg.n as usize;
            let records: Vec<String> = (0..n)
                .map(|t| {
                    let r = &seg.tasks[t];
                    format!("{:?} waits {} refs {}", r.state, r.waiting, r.refc)
                })
                .collect();
            let queued = ready_queues(s);
            format!(
                "{records:?}\nsent {:?}\nqueued {queued:?} parked {:?}",
                out.tasks(1),
                s.ready.parked()
            )
        })
        .collect();
    assert_eq!(seen[0], seen[1]);
    // What a user sees: the tasks with nothing to wait for run, the others wait.
    let records = seen[0].lines().next().unwrap();
    for (t, want) in [
        (0, "Running waits 0"),
        (1, "Waiting waits 1"),
        (2, "Running waits 0"),
        (3, "Waiting waits 1"),
        (4, "Waiting waits 2"),
        (5, "Waiting waits 3"),
        (6, "Waiting waits 4"),
        (7, "Running waits 0"),
    ] {
        let got = records.split("\", \"").nth(t).unwrap();
        assert!(
            got.trim_matches(['[', '"']).starts_with(want),
            "task {t}: {got}"
        );
    }
}

/// The task state of number `k` (in declaration order).
fn state_no(k: u8) -> TaskState {
    [
        TaskState::Unplanned,
        TaskState::Waiting,
        TaskState::Ready,
        TaskState::Running,
        TaskState::Finished,
        TaskState::Freed,
        TaskState::Failed,
    ][k as usize]
}

#[test]
fn a_run_of_light_tasks_on_the_only_worker_stops_at_one_it_cannot_run() {
    // With one worker, the light queue is placed in one pass (`place_light_run`): a task of a
    // type the worker did not register is parked as before, the tasks after it still placed,
    // and the per-plan and per-group state counts are right.
    let mut h = H::new();
    let types: Vec<&str> = ORIGINAL_TASK_TYPES
        .iter()
        .copied()
        .filter(|t| *t != "loom/data/merge")
        .collect();
    h.worker_with_types(1, 1, &types);
    h.client(2);
    h.take();
    let labelled = |mut t: Task, label: &str| {
        t.label = Some(label.into());
        t
    };
    h.send(
        2,
        &plan_req(
            0,
            vec![
                labelled(task(CONST, b"a", &[], true), "g: a"),
                labelled(task(MERGE, b"", &[], true), "g: m"),
                labelled(task(CONST, b"b", &[], true), "g: b"),
                task(CONST, b"c", &[], true),
            ],
            &[],
        ),
    );
    let seen = h.take();
    assert_eq!(seen.tasks(1), vec![0, 2, 3]);
    assert_eq!(
        seen.of(1, 1)
            .iter()
            .map(|c| c.task_config.as_deref().unwrap_or_default().to_vec())
            .collect::<Vec<_>>(),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    let s = h.s.snapshot();
    let t = |ready, running, finished| crate::server::TaskCounts {
        waiting: 0,
        ready,
        running,
        finished,
        failed: 0,
    };
    assert_eq!(s.plans[0].tasks, t(1, 3, 0));
    let g = s.plans[0].groups.iter().find(|g| g.name == "g").unwrap();
    assert_eq!(g.tasks, t(1, 2, 0));
    assert_eq!(h.s.counters.assigned, 3);
    assert_eq!(h.s.workers[W0].light, 3);
    h.fin(1, 2, 1);
    h.take();
    let s = h.s.snapshot();
    assert_eq!(s.plans[0].tasks, t(1, 2, 1));
    // A worker that runs merges takes the parked one.
    h.worker(3, 1);
    assert_eq!(h.take().tasks(3), vec![1]);
    assert_eq!(h.s.snapshot().plans[0].tasks, t(0, 3, 1));
}

#[test]
fn a_run_of_light_tasks_goes_to_the_least_loaded_worker_each() {
    // With two workers, input-less light tasks go one by one to the least loaded (the first on
    // ties), as `pick` places them; a task with inputs ends the run (its inputs' places count).
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 2);
    h.client(2);
    h.take();
    let c = |cfg: &[u8]| task(CONST, cfg, &[], true);
    h.send(
        2,
        &plan_req(
            0,
            vec![c(b"a"), c(b"b"), c(b"c"), c(b"d"), c(b"e"), c(b"f")],
            &[],
        ),
    );
    let seen = h.take();
    // Load per cpu: the 2-cpu worker takes two for each one the 1-cpu worker takes.
    assert_eq!(seen.tasks(1), vec![0, 3]);
    assert_eq!(seen.tasks(3), vec![1, 2, 4, 5]);
    assert_eq!(h.s.counters.assigned, 6);
    assert_eq!(h.s.snapshot().plans[0].tasks.running, 6);
}

#[test]
fn a_worker_with_room_takes_a_queued_task_whose_input_it_holds() {
    // Eight one-cpu programs, each reading a const of its own; the consts alternate between two
    // one-cpu workers (each takes two programs: one runs, one queued). When a worker has room
    // and the queue's head needs the other (full) worker's object, it takes the next queued
    // program whose input it holds instead: no input moves.
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    let mut plan = Vec::new();
    for i in 0..8 {
        plan.push(task(CONST, format!("in {i}").as_bytes(), &[], false));
        plan.push(with_cpus(task(RUN, b"cat", &[2 * i], true), 0));
    }
    h.send(2, &plan_req(0, plan, &[1]));
    let seen = h.take();
    assert_eq!(seen.tasks(1), vec![0, 4, 8, 12]);
    assert_eq!(seen.tasks(3), vec![2, 6, 10, 14]);
    let conn = |i: i32| if i % 2 == 0 { 1 } else { 3 };
    let mut placed = Vec::new();
    for i in 0..8 {
        h.fin(conn(i), 2 * i, 8);
        placed.push(h.take().tasks(conn(i)));
    }
    // Programs 0..3 (tasks 1, 3, 5, 7) fill both workers; 4..7 wait.
    assert_eq!(placed.concat(), vec![1, 3, 5, 7]);
    // Worker 3 finishes program 1: the head (program 4, input on worker 1) waits; program 5
    // (input on worker 3) goes there.
    h.fin(3, 3, 8);
    let seen = h.take();
    assert_eq!(seen.tasks(3), vec![11]);
    assert!(seen.tasks(1).is_empty());
    h.fin(1, 1, 8);
    assert_eq!(h.take().tasks(1), vec![9]);
    h.fin(3, 7, 8);
    assert_eq!(h.take().tasks(3), vec![15]);
    h.fin(1, 5, 8);
    assert_eq!(h.take().tasks(1), vec![13]);
    assert_eq!(h.s.counters.transfers, 0);
    for (c, id) in [(3, 11), (1, 9), (3, 15), (1, 13)] {
        h.fin(c, id, 8);
    }
    assert_eq!(h.take().finished(2), vec![11, 9, 15, 13]);
}

/// A narrow consumer is sent with the input placed last, once, on that input's worker: the
/// walk skipped when its producer is placed first (`Server::sole_consumer`) leaves it for
/// the second. Plain, labelled and forward-referencing plans; with a second consumer of the
/// first input (a walk, not the skip); and on two workers, where the consts of each merge meet.
#[test]
fn a_narrow_consumer_is_sent_with_its_last_input() {
    for variant in ["plain", "labels", "forward", "two consumers"] {
        let mut h = setup(1);
        let c = |cfg: &[u8]| task(CONST, cfg, &[], false);
        let mut tasks = two_merges([4, 3]);
        match variant {
            "labels" => tasks[2].label = Some("m".into()),
            // The second merge takes a const declared after it.
            "forward" => {
                tasks[5].input_ids = vec![3, 6];
                tasks.push(c(b"e"));
            }
            "two consumers" => tasks.push(task(MERGE, b"", &[0], true)),
            _ => {}
        }
        h.send(2, &plan_req(0, tasks, &[]));
        let sent = h.take().tasks(1);
        let want = match variant {
            // (4 is needed by no result.)
            "forward" => vec![0, 1, 2, 3, 6, 5],
            // 0's walk sends its one-input consumer 6 at once; the merge waits for 1.
            "two consumers" => vec![0, 6, 1, 2, 3, 4, 5],
            _ => vec![0, 1, 2, 3, 4, 5],
        };
        assert_eq!(sent, want, "{variant}");
    }

    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    let c = |cfg: &[u8]| task(CONST, cfg, &[], false);
    let mut tasks = Vec::new();
    for k in 0..4 {
        tasks.extend([
            c(b"x"),
            c(b"y"),
            task(MERGE, b"", &[3 * k, 3 * k + 1], true),
        ]);
    }
    h.send(2, &plan_req(0, tasks, &[]));
    let seen = h.take();
    let (a, b) = (seen.tasks(1), seen.tasks(3));
    assert_eq!(a.len() + b.len(), 12);
    for sent in [&a, &b] {
        // Each merge right after its two consts, on their worker.
        for (i, &id) in sent.iter().enumerate() {
            if id % 3 == 2 {
                assert_eq!(sent[i - 2..i], [id - 2, id - 1], "{a:?} {b:?}");
            }
        }
    }
}

/// Skipping the walk from a producer whose one consumer waits for an unplaced last input, and
/// starting it at the one consumer found otherwise (`Server::sole_consumer`), change nothing:
/// random plans (merges of up to 3 inputs, some declared before their inputs) on one, two or
/// three workers, run with and without those shortcuts, with inputs finished in random order
/// and (with more than one) a worker lost (its tasks placed again), send the same commands
/// (every field of every TASK, SEND and REMOVE) in the same order and end in the same task
/// records; both shortcuts do happen.
#[test]
fn skipping_a_walk_sends_what_the_walk_would() {
    use crate::server::schedule::{ALWAYS_WALK, FIRST_STEPS, SKIPPED};
    // `big`: plans of more tasks than a worker takes light ones (`LIGHT_CAP`), so that walks
    // and runs stop at the cap.
    let run = |seed: u32, n_workers: usize, big: bool, always_walk: bool| -> String {
        ALWAYS_WALK.set(always_walk);
        let mut rnd = seed;
        let mut next = move |m: u32| {
            rnd ^= rnd << 13;
            rnd ^= rnd >> 17;
            rnd ^= rnd << 5;
            rnd % m
        };
        let mut h = H::new();
        let conns: &[ConnId] = &[1, 3, 4][..n_workers];
        for &conn in conns {
            h.worker(conn, 1);
        }
        h.client(2);
        h.take();
        let n = if big {
            2 * LIGHT_CAP as i32 + next(1000) as i32
        } else {
            4 + next(24) as i32
        };
        let tasks: Vec<Task> = (0..n)
            .map(|t| {
                // Mostly recent tasks (producers of one consumer, as in W1), some older ones.
                let ins: Vec<i32> = (0..next(4))
                    .filter_map(|_| match next(8) {
                        // A forward reference (no cycle: the last task is a const).
                        0 if t < n - 1 => Some(n - 1),
                        1 if t > 0 => Some(next(t as u32) as i32),
                        _ if t > 0 => Some(t - 1 - next((t as u32).min(3)) as i32),
                        _ => None,
                    })
                    .collect();
                let ty = if ins.is_empty() { CONST } else { MERGE };
                task(ty, b"", &ins, next(3) == 0 || t == n - 2)
            })
            .collect();
        let mut tasks = tasks;
        // The last task is a const (forward references point at it).
        tasks[n as usize - 1] = task(CONST, b"", &[], false);
        h.send(2, &plan_req(0, tasks, &[]));
        let mut log = String::new();
        let mut lost = false;
        let mut queue: Vec<(ConnId, i32)> = Vec::new();
        for _step in 0..if big { 3 * n } else { 400 } {
            let seen = h.take();
            for &conn in conns {
                log += &format!("{conn}: {:?}\n", seen.cmds.get(&conn));
                let sent = seen.tasks(conn);
                queue.extend(sent.into_iter().map(|id| (conn, id)));
            }
            if queue.is_empty() {
                break;
            }
            let (conn, id) = queue.remove(next(queue.len() as u32) as usize);
            if lost && conn == 3 {
                continue;
            }
            if !lost && n_workers > 1 && next(10) == 0 {
                lost = true;
                h.s.on_close(3);
                queue.retain(|&(c, _)| c != 3);
                continue;
            }
            h.fin(conn, id, 1 + next(3) as u64);
        }
        for seg in h.s.graph.segs.iter() {
            for off in 0..seg.n as usize {
                log += &format!("{:?}\n", seg.tasks[off]);
            }
        }
        ALWAYS_WALK.set(false);
        log
    };
    SKIPPED.set(0);
    FIRST_STEPS.set(0);
    for round in 0..300u32 {
        // (Wrapping: the product overflows in a debug build.)
        let seed = 0x2545_f491 ^ round.wrapping_mul(0x9e37_79b9);
        let n_workers = 1 + round as usize % 3;
        let skipping = run(seed, n_workers, false, false);
        let walking = run(seed, n_workers, false, true);
        assert_eq!(skipping, walking, "round {round}");
    }
    for round in 0..6u32 {
        let seed = 0x1b87_3593 ^ round.wrapping_mul(0x9e37_79b9);
        let n_workers = 1 + round as usize % 2;
        let skipping = run(seed, n_workers, true, false);
        let walking = run(seed, n_workers, true, true);
        assert!(skipping == walking, "big round {round}");
    }
    assert!(SKIPPED.get() > 50, "the skip happens ({})", SKIPPED.get());
    assert!(
        FIRST_STEPS.get() > 50,
        "the first step is found ({})",
        FIRST_STEPS.get()
    );
}

/// A task's windows are read with one bounds check of its two offsets
/// (`segment::offsets_of`): the last task's windows are whole, and an offset past the
/// segment's tasks panics rather than reading past its tables (also one past `u32::MAX`).
#[test]
fn a_window_past_the_last_task_panics() {
    let mut h = setup(1);
    let tasks = vec![
        task(CONST, b"first", &[], false),
        task(MERGE, b"last", &[0], true),
    ];
    h.send(2, &plan_req(0, tasks, &[]));
    assert!(h.take().errors(2).is_empty());
    let seg = h.s.graph.segs.iter().next().unwrap();
    assert_eq!(seg.config(0), b"first");
    assert_eq!(seg.config(1), b"last");
    assert_eq!(seg.inputs(1), &[seg.id(0)]);
    assert_eq!(seg.consumers(0), &[seg.id(1)]);
    assert!(seg.consumers(1).is_empty());
    assert_eq!(seg.input_range(1).len(), 1);
    for off in [2, 3, u32::MAX as usize, usize::MAX] {
        let read = |f: &dyn Fn() -> usize| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err()
        };
        assert!(read(&|| seg.config(off).len()), "config({off})");
        assert!(read(&|| seg.inputs(off).len()), "inputs({off})");
        assert!(read(&|| seg.consumers(off).len()), "consumers({off})");
        assert!(read(&|| seg.input_range(off).len()), "input_range({off})");
        assert!(read(&|| seg.cons_range(off).len()), "cons_range({off})");
    }
}

/// The offset-table invariant that `Segment::config`, `inputs` and `consumers` rely on to read
/// a task's window without checking it (see `Segment`) holds for every segment intake builds:
/// the usual plan, one with labels, one with a forward reference, one with checkpoints to load,
/// and a dslice's expansion segment. Its check fails on a segment that breaks it (a last offset
/// short of its column, offsets that descend).
#[test]
fn segments_built_by_intake_keep_the_offset_table_invariant() {
    let dir = std::env::temp_dir().join(format!("loom-offsets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for variant in ["plain", "labels", "forward", "load"] {
        let mut h = setup(1);
        let c = |cfg: &[u8]| task(CONST, cfg, &[], false);
        let mut tasks: Vec<_> = (0..9).map(|i| c(format!("cfg {i}").as_bytes())).collect();
        tasks.push(task(MERGE, b"m", &(0..8).collect::<Vec<_>>(), true)); // 9
        tasks.push(task(MERGE, b"", &(0..9).collect::<Vec<_>>(), true)); // 10
        tasks.push(task(MERGE, b"", &[9, 10], true)); // 11
        tasks.push(c(b"")); // 12
        match variant {
            "labels" => tasks[11].label = Some("m".into()),
            "forward" => tasks[11].input_ids = vec![9, 12],
            "load" => tasks[9].checkpoint_path = Some(dir.to_str().unwrap().into()),
            _ => {}
        }
        let mut p = plan_req(0, tasks, &[]);
        p.load_checkpoints = Some(variant == "load");
        h.send(2, &p);
        assert!(h.take().errors(2).is_empty(), "{variant}");
        for seg in h.s.graph.segs.iter() {
            assert!(seg.offsets_hold(), "{variant}");
            assert_eq!(seg.config(9), b"m", "{variant}");
            assert_eq!(seg.inputs(10).len(), 9, "{variant}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();

    // A dslice over an array of 8 consts: its pieces and copies are an expansion's segment.
    let mut h = setup(1);
    h.send(2, &plan_req(0, dslice_plan(), &[]));
    h.take();
    for i in 0..8 {
        h.fin(1, i, 1);
    }
    h.respond(1, worker_response::Type::Finished, 8, 8, 8);
    assert!(!h.take().of(1, 1).is_empty(), "the pieces went out");
    assert_eq!(
        h.s.graph.segs.iter().count(),
        2,
        "the plan and its expansion"
    );
    assert!(h.s.graph.segs.iter().all(Segment::offsets_hold));

    // The check fails on a broken table.
    let seg = h.s.graph.segs.iter_mut().next().unwrap();
    seg.arena.push(0);
    assert!(!seg.offsets_hold(), "a last offset short of its column");
    seg.arena.pop();
    assert!(seg.offsets_hold());
    let first = seg.cons_off[1];
    seg.cons_off[1] = u32::MAX;
    assert!(!seg.offsets_hold(), "descending offsets");
    seg.cons_off[1] = first;
    assert!(seg.offsets_hold());
}

/// The ready queues' entries by cpus, in queue order (for comparing two runs).
fn ready_queues(s: &Server) -> Vec<(u16, Vec<TaskId>)> {
    s.ready
        .queued()
        .map(|(c, q)| (c, q.iter().copied().collect()))
        .collect()
}
