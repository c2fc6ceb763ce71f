//! Test fixture: tries what WASI offers any standard Rust program — the file
//! system, the environment, the network — and answers what it got, with the
//! subscriber id the host gave it. The host's sandbox must deny every attempt
//! (an empty WASI context: no preopened directory, no variables, no sockets, no
//! name lookup) and never show a module the subscriber's phone number.
//!
//! `on-mo` connects to the `host:port` written in the MO's text; `bulletin` to
//! `127.0.0.1:9`. The answer is
//! `dir=… read=… write=… env=<count> args=<count> tcp=… dns=… sub=<id>`, each
//! attempt `denied` or what it achieved.

use std::net::ToSocketAddrs;

use tongdao_sdk::{Bulletin, BulletinRequest, Mo, Module, ModuleError, ModuleInfo};

struct WasiProbe;

fn probe(target: &str) -> String {
    let dir = std::fs::read_dir("/").map_or("denied", |_| "listed");
    let read = std::fs::read("/etc/passwd").map_or("denied", |_| "read");
    let write = std::fs::write("probe.txt", b"x").map_or("denied", |()| "written");
    let env = std::env::vars_os().count();
    let args = std::env::args_os().count();
    let tcp = std::net::TcpStream::connect(target).map_or("denied", |_| "connected");
    let dns = ("localhost", 80)
        .to_socket_addrs()
        .map_or("denied", |_| "resolved");
    format!("dir={dir} read={read} write={write} env={env} args={args} tcp={tcp} dns={dns}")
}

impl Module for WasiProbe {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "wasi-probe".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test fixture: tries files, environment and network".into(),
            services: vec!["T".into()],
        }
    }

    fn bulletin(_request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        Ok(Bulletin::Single(probe("127.0.0.1:9")))
    }

    fn on_mo(message: Mo) -> Result<Option<String>, ModuleError> {
        Ok(Some(format!(
            "{} sub={}",
            probe(message.text.trim()),
            message.subscriber
        )))
    }
}

tongdao_sdk::export_module!(WasiProbe);
