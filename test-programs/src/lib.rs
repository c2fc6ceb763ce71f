//! Test-only: the guest components the tests and benchmarks load, the way
//! wasmtime's `test-programs` crate serves its tests. Never a dependency of the
//! product: `tongdao` and `tongdao-e2e` take it as a dev-dependency. (The example
//! modules the product itself ships are embedded by `tongdao::demo`.)
//!
//! `build.rs` builds the whole `guests/` workspace for `wasm32-wasip2` (release)
//! and points `TONGDAO_TEST_PROGRAMS_DIR` at the output. A guest crate `foo-bar`
//! becomes `foo_bar.wasm` there (Cargo names `cdylib`s with underscores); the
//! hand-made fixtures `core-module.wasm` and `random.bin` are copied next to them.
//!
//! | name | what it is |
//! |---|---|
//! | `horoscope` | example: keyed bulletin on attribute `sign`, service `XZ` |
//! | `quiz` | example: daily question and scores in the key-value store, service `DT` |
//! | `jokes` | example: rotates through the content library collection `jokes`, service `XH` |
//! | `hostile-loop` | never returns from `bulletin` / `on-mo` |
//! | `hostile-memory` | tries to allocate and touch 1 GiB in `bulletin` |
//! | `hostile-trap` | panics in `bulletin`, aborts in `on-mo` |
//! | `hostile-oversize` | answers `bulletin` and `on-mo` with 1 MiB texts |
//! | `hostile-kv-flood` | writes new keys forever in `bulletin` |
//! | `hostile-imports` | implements the world but also imports `evil:net/socket@0.1.0` |
//! | `hostile-sleep` | sleeps 1 s through WASI in `bulletin`; writes the key `held` in `on-mo` |
//! | `hostile-burn` | burns CPU for 80 ms of its call clock in `bulletin` |
//! | `hostile-log-flood` | logs three 30 MB lines in `bulletin`; a 40 MB reply in `on-mo` |
//! | `hostile-limits` | `bulletin`: N keyed variants (N ends the push id); `on-mo` `kv N`: stores N bytes, answers the verdict; `data N`: N content calls; `get`: the stored value's size |
//! | `hostile-flaky` | `bulletin` runs past the deadline twice (counted in KV), then answers |
//! | `sly-words` | behaves, except a prohibited word for an all-digit MO: 1 of 20 admission calls |
//! | `sly-words-clean` | version `2.0.0` of the module `sly-words`: a clean text for an all-digit MO (shadow runs, rollback) |
//! | `contract-v2-0-0`, `contract-v0-9-0` | complete modules built against `tongdao:partner@2.0.0`, `@0.9.0` (`guests/fixtures/wit/`), versions this host does not serve |
//! | `contract-v1-1-0` | `jokes` 2.0.0 built against `tongdao:partner@1.1.0` (`wit/v1.1.0`): a per-operator bulletin, and `on-mo` counts jokes told in `kv` |
//! | `clock-probe` | answers `offset=<s> local=<date>` (and `date=<push date>` in `bulletin`): the time it sees |
//! | `wasi-probe` | tries files, environment, a TCP connect and a name lookup with standard Rust `std`, answers what it got and its subscriber id |
//! | `stateful-counter` | answers `call N`, N counted in its linear memory: `call 1` on every fresh instance |
//! | `wrong-world` | a valid component exporting only `other:thing/greeter@0.1.0` |
//! | `core-module` | a valid core module (not a component) exporting a function `f` |
//! | `random` | 1 KiB of random bytes, not WebAssembly |
//!
//! The hostile fixtures describe themselves with service `T`.

use std::path::PathBuf;

/// The directory holding every built guest and fixture.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("TONGDAO_TEST_PROGRAMS_DIR"))
}

/// The path of a built guest component or fixture, by crate name (`"hostile-loop"`,
/// `"wrong-world"`, `"horoscope"`…) or fixture name (`"core-module"`, `"random"`).
/// Underscores work as well as dashes (`"hostile_loop"`), and so does the file
/// name itself (`"hostile_loop.wasm"`, `"random.bin"`).
///
/// The path is where the build put it; it is not checked to exist.
pub fn artifact(name: &str) -> PathBuf {
    let file = match name {
        "core-module" => "core-module.wasm".to_string(),
        "random" => "random.bin".to_string(),
        _ if name.ends_with(".wasm") || name.ends_with(".bin") => name.to_string(),
        _ => format!("{}.wasm", name.replace('-', "_")),
    };
    dir().join(file)
}

/// A byte-different copy of a component: `wasm` with a custom section `pad`
/// appended, holding `mark` and `pad_bytes` more bytes. It validates, compiles and
/// runs exactly as `wasm` does, but has its own SHA-256 (and size), so the
/// registry stores it as a new version. For quota tests and benchmarks.
pub fn byte_different_copy(wasm: &[u8], mark: u32, pad_bytes: usize) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    const NAME: &[u8] = b"pad";
    let mut payload = mark.to_le_bytes().to_vec();
    payload.resize(4 + pad_bytes, 0x5a);
    let mut out = Vec::with_capacity(wasm.len() + payload.len() + 16);
    out.extend_from_slice(wasm);
    out.push(0); // custom section
    leb128(1 + NAME.len() + payload.len(), &mut out);
    leb128(NAME.len(), &mut out);
    out.extend_from_slice(NAME);
    out.extend_from_slice(&payload);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The first eight bytes of a component (`\0asm`, version 0x0d, layer 1).
    const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

    /// Every `.rs` file under `dir`, read.
    fn sources(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }

    /// Every crate of the guest workspace is built, listed in the table above, and
    /// loaded by some test or benchmark (wasmtime checks the same of its
    /// test-programs): a fixture nobody loads proves nothing. The hand-made
    /// fixtures are where they belong.
    #[test]
    fn every_guest_is_built_documented_and_used() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let manifest = std::fs::read_to_string(root.join("guests").join("Cargo.toml")).unwrap();
        let members: Vec<&str> = manifest
            .split_once("members = [")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(list, _)| list.split('"').skip(1).step_by(2).collect())
            .unwrap();
        assert!(members.len() >= 19, "{members:?}");
        let docs = include_str!("lib.rs");
        let mut users = String::new();
        for dir in ["host/tests", "host/benches", "tests/tests"] {
            sources(&root.join(dir), &mut users);
        }
        for name in members {
            let bytes = std::fs::read(artifact(name)).unwrap_or_default();
            assert!(
                bytes.starts_with(&COMPONENT_HEADER),
                "{name} is not built: {}",
                artifact(name).display()
            );
            assert!(
                docs.contains(&format!("`{name}`")),
                "{name} is missing from the table of test-programs/src/lib.rs"
            );
            let used = [name.to_string(), name.replace('-', "_")]
                .iter()
                .any(|n| users.contains(&format!("\"{n}\"")));
            assert!(used, "no test or benchmark loads the guest {name}");
        }
        let core = std::fs::read(artifact("core-module")).unwrap_or_default();
        assert!(
            core.starts_with(b"\0asm\x01\0\0\0"),
            "core-module is a core module"
        );
        let random = std::fs::read(artifact("random")).unwrap_or_default();
        assert_eq!(random.len(), 1024);
        assert!(!random.starts_with(b"\0asm"));
        assert_eq!(artifact("hostile_loop.wasm"), artifact("hostile-loop"));
    }
}
