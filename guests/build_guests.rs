//! Building the guest workspace from a build script, shared by the two crates that
//! need guests: `host/build.rs` (the example modules the product embeds for
//! `serve --demo`) and `test-programs/build.rs` (every guest, hostile fixtures
//! included, for tests and benchmarks). Each includes this file as a module; it is
//! not part of any guest crate.
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 [--package NAME…] \
//!     --manifest-path <root>/guests/Cargo.toml --target-dir <root>/target/guests
//! ```
//!
//! If the `wasm32-wasip2` target is missing it is added through rustup, with a
//! warning.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, exit};
use std::{env, fs};

/// The guests' target.
pub const TARGET: &str = "wasm32-wasip2";

/// Rerun when anything the guests are built from changes: the guest crates (all,
/// or `only` these), their manifests, sources and WIT, the SDK, the contract and the
/// hand-made fixtures. Only existing paths are listed: Cargo treats a missing one as
/// always changed.
pub fn track_sources(root: &Path, only: Option<&[&str]>) {
    println!("cargo:rerun-if-changed=build.rs");
    println!(
        "cargo:rerun-if-changed={}",
        root.join("guests").join("build_guests.rs").display()
    );
    let guests = root.join("guests");
    let mut paths = vec![
        guests.join("Cargo.toml"),
        guests.join("Cargo.lock"),
        guests.join("fixtures"),
        root.join("sdk").join("Cargo.toml"),
        root.join("sdk").join("src"),
        root.join("wit"),
    ];
    // Each guest crate; not the whole `guests/` folder, which may hold a stray
    // `target/` from a manual build.
    if let Ok(entries) = fs::read_dir(&guests) {
        let mut crates: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("Cargo.toml").is_file())
            .filter(|p| {
                only.is_none_or(|names| {
                    p.file_name()
                        .is_some_and(|n| names.iter().any(|name| n == *name))
                })
            })
            .collect();
        crates.sort();
        for dir in crates {
            paths.extend(["Cargo.toml", "src", "wit"].map(|p| dir.join(p)));
        }
    }
    for path in paths.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Make sure the toolchain that builds us can build for `wasm32-wasip2`, adding the
/// target through rustup if it is missing.
pub fn ensure_target() {
    if guests_toolchain().is_some() {
        // That toolchain is the project's pinned one, which lists the target.
        return;
    }
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let sysroot = match Command::new(&rustc).args(["--print", "sysroot"]).output() {
        Ok(out) if out.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
        _ => fail(&format!(
            "cannot run `{} --print sysroot`",
            rustc.to_string_lossy()
        )),
    };
    if sysroot.join("lib").join("rustlib").join(TARGET).is_dir() {
        return;
    }

    // The toolchain to add it to: the one rustup picked for this build, else the
    // one whose sysroot this is (`~/.rustup/toolchains/<name>`).
    let toolchain = env::var("RUSTUP_TOOLCHAIN").ok().or_else(|| {
        let in_rustup = sysroot.parent().and_then(Path::file_name) == Some("toolchains".as_ref());
        in_rustup
            .then(|| {
                sysroot
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .flatten()
    });
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", TARGET]);
    if let Some(toolchain) = &toolchain {
        rustup.args(["--toolchain", toolchain]);
    }
    let command = format!(
        "rustup target add {TARGET}{}",
        toolchain
            .as_deref()
            .map(|t| format!(" --toolchain {t}"))
            .unwrap_or_default()
    );
    println!(
        "cargo:warning=the {TARGET} target was missing; installing it for the guest modules: `{command}`"
    );
    match rustup.output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            fail(&format!(
                "the {TARGET} target is missing and `{command}` failed (output above); run it yourself, then build again"
            ));
        }
        Err(e) => fail(&format!(
            "the {TARGET} target is missing and rustup could not be run ({e}); install the target with `{command}` (or `rustup toolchain install` in the project), then build again"
        )),
    }
}

/// `TONGDAO_GUESTS_TOOLCHAIN`: a rustup toolchain to build the guests with instead of
/// the one building the host. The fuzz builds (`.ci/fuzz.sh`) run on nightly, which may
/// lack the `wasm32-wasip2` standard library; they name the project's pinned toolchain,
/// so the guests are the very ones the stable build made (same target dir, same
/// compiler: nothing is rebuilt).
fn guests_toolchain() -> Option<String> {
    println!("cargo:rerun-if-env-changed=TONGDAO_GUESTS_TOOLCHAIN");
    env::var("TONGDAO_GUESTS_TOOLCHAIN")
        .ok()
        .filter(|t| !t.is_empty())
}

/// Build the guest workspace (every crate, or `only` these packages), release, for
/// `wasm32-wasip2`, into `<root>/target/guests`; returns the directory of the
/// `.wasm` files.
pub fn build(root: &Path, only: Option<&[&str]>) -> PathBuf {
    let guests = root.join("guests");
    let target_dir = root.join("target").join("guests");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = match guests_toolchain() {
        Some(toolchain) => {
            let mut command = Command::new("rustup");
            command.args(["run", &toolchain, "cargo"]);
            for key in ["RUSTC", "RUSTDOC", "RUSTUP_TOOLCHAIN", "CARGO"] {
                command.env_remove(key);
            }
            command
        }
        None => Command::new(&cargo),
    };
    command
        .arg("build")
        .arg("--release")
        .args(["--target", TARGET])
        .arg("--manifest-path")
        .arg(guests.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&guests);
    for package in only.unwrap_or_default() {
        command.args(["--package", package]);
    }

    // Settings meant for the outer build must not leak into the guests': flags
    // for the host's target, the host's target dir and target, the jobserver, and
    // wrappers (clippy sets RUSTC_WORKSPACE_WRAPPER: linting the host must not lint
    // the guests). The guests' own `[profile.release]` is authoritative, so
    // profile overrides from the environment go too.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let leaks = matches!(
            key,
            "CARGO_ENCODED_RUSTFLAGS"
                | "RUSTFLAGS"
                | "CARGO_TARGET_DIR"
                | "CARGO_BUILD_TARGET"
                | "CARGO_BUILD_TARGET_DIR"
                | "CARGO_BUILD_RUSTFLAGS"
                | "CARGO_BUILD_RUSTC_WRAPPER"
                | "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER"
                | "CARGO_MAKEFLAGS"
                | "MAKEFLAGS"
                | "MFLAGS"
                | "CARGO_PRIMARY_PACKAGE"
                | "RUSTC_WRAPPER"
                | "RUSTC_WORKSPACE_WRAPPER"
                | "CLIPPY_ARGS"
                | "CLIPPY_CONF_DIR"
        ) || key.starts_with("CARGO_PROFILE_")
            || key.starts_with("__CARGO_FIX");
        if leaks {
            command.env_remove(key);
        }
    }

    let output = match command.output() {
        Ok(output) => output,
        Err(e) => fail(&format!("cannot run `{}`: {e}", cargo.to_string_lossy())),
    };
    if !output.status.success() {
        // Cargo shows a failed build script's stderr: forward the guests' errors.
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        fail(&format!(
            "building the guest components failed ({}); to see it alone, run: cargo build --release --target {TARGET} --manifest-path guests/Cargo.toml --target-dir target/guests",
            output.status
        ));
    }
    target_dir.join(TARGET).join("release")
}

pub fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    exit(1)
}
