//! The user guide's `my/count` as a HyperLoom native task library.
//!
//! `my/count` counts the occurrences of the one-byte config in its single D-Object input and
//! returns the count as 8 bytes, little-endian.
//!
//! `my/panic` only panics: it shows (and the tests check) that a panic becomes a task error
//! rather than the end of the worker.
//!
//! Build with `cargo build --release -p hyperloom-example-count`, then start a worker with
//! `--extension target/release/libhyperloom_example_count.so`.

use loom_task::{Input, Output, TaskContext};

/// `my/count`.
pub fn count(ctx: &TaskContext, inputs: &[Input], config: &[u8]) -> Result<Output, String> {
    let [byte] = config else {
        return Err(format!(
            "my/count: the config must be exactly one byte, got {}",
            config.len()
        ));
    };
    let [input] = inputs else {
        return Err(format!(
            "my/count: expected exactly one input, got {}",
            inputs.len()
        ));
    };
    let data = input
        .bytes()
        .ok_or("my/count: the input is not a D-Object")?;
    let count = data.iter().filter(|b| *b == byte).count() as u64;
    ctx.debug(&format!("my/count: {count} in {} bytes", data.len()));
    Ok(Output::u64_le(count))
}

/// `my/panic`: panics with the config as its message.
pub fn panic(_: &TaskContext, _: &[Input], config: &[u8]) -> Result<Output, String> {
    panic!("my/panic: {}", String::from_utf8_lossy(config))
}

loom_task::export_tasks!(name = "hyperloom-example-count", tasks = {
    "my/count" => count,
    "my/panic" => panic,
});

#[cfg(test)]
mod tests {
    use super::*;

    fn run(inputs: &[Input], config: &[u8]) -> Result<Output, String> {
        TaskContext::with_logger(&mut |_, _| {}, |ctx| count(ctx, inputs, config))
    }

    #[test]
    fn counts() {
        assert_eq!(
            run(&[Input::dobject(b"abcabca")], b"a"),
            Ok(Output::u64_le(3))
        );
        assert_eq!(run(&[Input::dobject(b"")], b"a"), Ok(Output::u64_le(0)));
    }

    #[test]
    fn rejects_bad_use() {
        assert!(run(&[Input::dobject(b"abc")], b"")
            .unwrap_err()
            .contains("exactly one byte"));
        assert!(run(&[], b"a").unwrap_err().contains("exactly one input"));
        assert!(run(&[Input::other(1, 1)], b"a")
            .unwrap_err()
            .contains("not a D-Object"));
    }
}
