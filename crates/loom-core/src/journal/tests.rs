use super::writer::JournalWriter;
use super::*;

fn plan(token: u64, client_base: i32, n: u32, uses: &[i32]) -> Record {
    Record::Plan {
        token,
        ibase: client_base,
        client_base,
        n,
        uses: uses.to_vec(),
        load: false,
        bytes: vec![1, 2, 3],
    }
}

fn all_kinds() -> Vec<Record> {
    vec![
        Record::Session { token: 7 },
        Record::Symbols {
            names: vec!["my/task".into(), "other".into()],
        },
        plan(7, 0, 10, &[]),
        Record::Finished {
            token: 7,
            cid: 3,
            size: 1 << 40,
            length: 5,
            notified: true,
            checkpointed: false,
        },
        Record::Release { token: 7, cid: 3 },
        Record::PlanDropped {
            token: 7,
            client_base: 0,
        },
        Record::NextId { next: 12 },
        Record::SessionClosed { token: 7 },
    ]
}

#[test]
fn crc32_is_the_ieee_one() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}

#[test]
fn records_round_trip() {
    let recs = all_kinds();
    let bytes = encode_file(&recs);
    let c = parse(&bytes, Path::new("j")).unwrap();
    assert_eq!(c.records, recs);
    assert_eq!(c.valid_len, bytes.len() as u64);
    assert!(c.cut.is_none());
}

#[test]
fn a_truncated_or_corrupt_tail_is_cut_never_an_error() {
    let recs = all_kinds();
    let bytes = encode_file(&recs);
    for cut in 9..bytes.len() {
        let c = parse(&bytes[..cut], Path::new("j")).unwrap();
        assert!(c.records.len() < recs.len());
        assert_eq!(c.records[..], recs[..c.records.len()]);
        assert!(c.cut.is_some() || c.valid_len == cut as u64);
    }
    let mut bad = bytes.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff; // inside the last record's payload
    let c = parse(&bad, Path::new("j")).unwrap();
    assert_eq!(c.records.len(), recs.len() - 1);
    assert!(c.cut.unwrap().contains("CRC mismatch"));
    assert!(matches!(
        parse(b"not a journal at all", Path::new("j")),
        Err(JournalError::NotAJournal(_))
    ));
}

#[test]
fn compaction_drops_closed_sessions_and_done_plans_unless_a_kept_plan_uses_them() {
    let recs = vec![
        Record::Session { token: 1 },
        Record::Session { token: 2 },
        plan(1, 0, 10, &[]),  // done, used by plan 20
        plan(1, 10, 10, &[]), // done, unused: dropped
        plan(1, 20, 5, &[0]), // live, uses plan 0
        Record::Release { token: 1, cid: 12 },
        Record::PlanDropped {
            token: 1,
            client_base: 0,
        },
        Record::PlanDropped {
            token: 1,
            client_base: 10,
        },
        plan(2, 0, 4, &[]),
        Record::SessionClosed { token: 2 },
        Record::NextId { next: 30 },
        Record::NextId { next: 40 },
    ];
    let out = compact(recs);
    assert_eq!(
        out,
        vec![
            Record::Session { token: 1 },
            plan(1, 0, 10, &[]),
            plan(1, 20, 5, &[0]),
            Record::NextId { next: 40 },
        ]
    );
}

#[test]
fn the_writer_commits_and_compacts_on_its_thread() {
    let dir = std::env::temp_dir().join(format!("loom-journal-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("j");
    let start = vec![Record::Session { token: 9 }];
    // A tiny compaction threshold: the writer compacts as soon as the file doubled.
    let w = JournalWriter::create(&path, &start, 1).unwrap();
    for b in 0..50 {
        let mut buf = Vec::new();
        plan(9, b * 10, 10, &[]).encode(&mut buf);
        Record::PlanDropped {
            token: 9,
            client_base: b * 10,
        }
        .encode(&mut buf);
        w.append(buf);
    }
    let mut last = Vec::new();
    plan(9, 1000, 1, &[]).encode(&mut last);
    w.append(last);
    w.sync();
    let c = read(&path).unwrap();
    assert!(c.cut.is_none());
    let live: Vec<_> = compact(c.records);
    assert_eq!(
        live,
        vec![Record::Session { token: 9 }, plan(9, 1000, 1, &[])]
    );
    // Compacted while running: far smaller than the 51 plans written.
    assert!(std::fs::metadata(&path).unwrap().len() < 400);
    drop(w);
    std::fs::remove_dir_all(&dir).unwrap();
}
