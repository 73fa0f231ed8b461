//! The command line: a useful --help (without the test-only flag), and bad arguments or
//! images refused with one line and a non-zero status.

mod common;

use std::process::Command;

use common::*;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_the_options_but_not_the_test_flag() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    for opt in [
        "--socket",
        "--image",
        "--serial",
        "--queues",
        "--readonly",
        "--direct",
        "--state",
        "--no-sandbox",
    ] {
        assert!(out.contains(opt), "--help lacks {opt}:\n{out}");
    }
    assert!(!out.contains("stall"), "{out}");
}

#[test]
fn bad_arguments_and_images_get_one_line_and_a_failure() {
    let dir = TempDir::new("cli");
    let good = dir.image(4096);
    let empty = dir.path("empty.img");
    std::fs::write(&empty, b"").expect("empty");
    let ragged = dir.path("ragged.img");
    std::fs::write(&ragged, vec![0u8; 1000]).expect("ragged");
    let sock = dir.path("s.sock");
    let s = sock.to_str().expect("utf-8");
    let g = good.to_str().expect("utf-8");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--socket", s], "--image"),
        (vec!["--socket", s, "--image", g, "--queues", "0"], "queues"),
        (
            vec!["--socket", s, "--image", g, "--queues", "65"],
            "queues",
        ),
        (
            vec![
                "--socket",
                s,
                "--image",
                g,
                "--serial",
                "012345678901234567890",
            ],
            "serial",
        ),
        (
            vec!["--socket", s, "--image", g, "--serial", "tab\there"],
            "serial",
        ),
        (vec!["--socket", s, "--image", g, "--bogus"], "--bogus"),
        (
            vec!["--socket", s, "--image", empty.to_str().expect("utf-8")],
            "empty",
        ),
        (
            vec!["--socket", s, "--image", ragged.to_str().expect("utf-8")],
            "not a multiple of 512",
        ),
        (
            vec!["--socket", s, "--image", "/nonexistent/disk.img"],
            "opening",
        ),
        (vec!["--socket", g, "--image", g], "not a socket"),
    ];
    for (args, want) in cases {
        let (code, _, err) = run(&args);
        assert!(code.is_some_and(|c| c != 0), "{args:?}: exit {code:?}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line, got:\n{err}");
        assert!(lines[0].starts_with("tessera-nvme: error: "), "{err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
