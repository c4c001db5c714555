use super::*;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("loom-trace-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn writer_formats_records_and_header() {
    let dir = tmpdir("writer").join("nested");
    let mut w = TraceWriter::create(&dir, "x.trace", "server", "").unwrap();
    w.rec_at(b'S', 12).i(-3).u(7).end();
    w.line(b'T')
        .i(5)
        .i(8)
        .ids(&[1, 2, 30])
        .text(b"a b\\c\nd")
        .end();
    w.line(b'T').i(6).i(8).ids(&[]).end();
    w.line(b'Y').u(1).word("loom/base/merge").end();
    w.line(b'W').word("").word("x y").end();
    w.flush();
    let s = std::fs::read_to_string(dir.join("x.trace")).unwrap();
    let lines: Vec<&str> = s.lines().collect();
    let h: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(&h[..3], &["HYPERLOOM-TRACE", "1", "server"]);
    assert!(h[3].parse::<u64>().unwrap() > 1_600_000_000_000_000);
    assert_eq!(lines[1], "S 12 -3 7");
    assert_eq!(lines[2], "T 5 8 1,2,30 a b\\\\c\\nd");
    assert_eq!(lines[3], "T 6 8 -");
    assert_eq!(lines[4], "Y 1 loom/base/merge");
    assert_eq!(lines[5], "W - x_y");
    assert!(s.ends_with('\n'));
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[test]
fn writer_buffers_until_a_block_or_flush_and_flushes_on_drop() {
    let dir = tmpdir("buffer");
    let mut w = TraceWriter::create(&dir, "b.trace", "worker", "3 2 4000").unwrap();
    let path = w.path().to_owned();
    w.rec(b'S').i(1).i(0).end();
    // Buffered: nothing on disk yet.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    // A full block is written out.
    for i in 0..20_000 {
        w.rec(b'F').i(i).u(100).end();
    }
    let on_disk = std::fs::metadata(&path).unwrap().len();
    assert!(on_disk >= BLOCK as u64, "{on_disk}");
    w.maybe_flush(); // not a second old yet
    assert_eq!(std::fs::metadata(&path).unwrap().len(), on_disk);
    drop(w);
    let s = std::fs::read_to_string(&path).unwrap();
    assert!(s.starts_with("HYPERLOOM-TRACE 1 worker "));
    assert!(s.lines().next().unwrap().ends_with(" 3 2 4000"));
    assert_eq!(s.lines().count(), 1 + 1 + 20_000);
    assert!(s.ends_with("F") || s.ends_with('\n'));
    // Times are monotonic.
    let mut last = 0u64;
    for l in s.lines().skip(1) {
        let t: u64 = l.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(t >= last);
        last = t;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn push_u64_digits() {
    let mut v = Vec::new();
    for x in [
        0u64,
        9,
        10,
        99,
        100,
        101,
        12345,
        999_999,
        1_000_000,
        u64::MAX,
    ] {
        v.clear();
        push_u64(&mut v, x);
        assert_eq!(String::from_utf8(v.clone()).unwrap(), x.to_string());
    }
}

#[test]
fn cpu_sampler_reports_busy_process() {
    let mut s = CpuSampler::new();
    let t0 = Instant::now();
    let mut x = 0u64;
    while t0.elapsed() < Duration::from_millis(300) {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    std::hint::black_box(x);
    assert!(s.sample(Duration::from_secs(5)).is_none());
    if cfg!(target_os = "linux") {
        let (p, sys) = s.sample(Duration::ZERO).expect("a sample on Linux");
        // A busy loop of 300 ms wall time; on a loaded 2-core machine the process may get only a
        // fifth of a core, so the bound only separates "busy" from an idle 0%.
        assert!(p >= 5, "process cpu {p}%");
        assert!(sys <= 100);
    }
}

#[test]
fn unwritable_directory_is_an_error() {
    let e = TraceWriter::create(Path::new("/proc/no/such/dir"), "s.trace", "server", "");
    assert!(e.is_err());
}
