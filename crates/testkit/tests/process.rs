//! `Process`: output capture, readiness waits that fail early, and termination.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use testkit::{Error, Process, Upstream, free_port, localhost};

#[test]
fn captures_output_and_exit() {
    let mut p = Process::spawn("sh", ["-c", "echo out; echo err >&2; exit 3"], &[]).unwrap();
    let status = p.wait_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(status.code(), Some(3));
    assert_eq!(p.stdout(), "out\n");
    assert_eq!(p.stderr(), "err\n");
}

#[test]
fn passes_env() {
    let mut p = Process::spawn(
        "sh",
        ["-c", "echo $BOSUN_TEST_VAR"],
        &[("BOSUN_TEST_VAR", "hi")],
    )
    .unwrap();
    p.wait_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(p.stdout(), "hi\n");
}

#[test]
fn wait_for_port_fails_early_when_the_process_exits() {
    let mut p = Process::spawn("sh", ["-c", "echo cannot bind >&2; exit 1"], &[]).unwrap();
    let started = Instant::now();
    let err = p
        .wait_for_port(localhost(free_port()), Duration::from_secs(10))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, Error::Exited { .. }), "{err}");
    assert!(err.to_string().contains("cannot bind"), "{err}");
}

#[test]
fn wait_ready_times_out_with_the_last_answer() {
    let up = Upstream::start("not-ready").unwrap();
    let mut p = Process::spawn("sleep", ["30"], &[]).unwrap();
    // The upstream answers /ready with 200, so this one succeeds…
    p.wait_ready(up.addr(), Duration::from_secs(5)).unwrap();
    // …and with x-testkit-status it would not; a closed port is not ready either.
    let err = p
        .wait_ready(localhost(free_port()), Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(err, Error::NotReady { .. }), "{err}");
}

#[test]
fn terminate_and_wait_uses_sigterm_then_sigkill() {
    let mut p = Process::spawn("sleep", ["30"], &[]).unwrap();
    let status = p.terminate_and_wait(Duration::from_secs(5)).unwrap();
    assert_eq!(status.code(), None, "killed by a signal");

    // A process ignoring SIGTERM is killed after the bound.
    let mut p = Process::spawn("sh", ["-c", "trap '' TERM; echo armed; sleep 30"], &[]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.stdout().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    let status = p.terminate_and_wait(Duration::from_millis(200)).unwrap();
    assert_eq!(status.code(), None);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn drop_kills() {
    let p = Process::spawn("sleep", ["30"], &[]).unwrap();
    let pid = p.pid();
    drop(p);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}
