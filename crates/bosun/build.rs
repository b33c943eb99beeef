//! Link flags for the `bosun` binary.

fn main() {
    // Relative relocations packed (DT_RELR, glibc 2.36+): the position-independent binary's ~60,000
    // relocations take 7 KB instead of 700 KB, which the loader reads at every start and which
    // then stayed resident. An older GNU ld ignores the flag with a warning.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
