//! Shared by the process benchmarks (`load`, `soak`; the SMSC simulator process is
//! `common::SimProcess`): the server's configuration, the
//! seeded tenant, what `/proc` says about a process, and latency percentiles.
//! The server process itself is started by the tests' `common::start_server`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Child;
use std::time::Duration;

use tongdao::partners;
use tongdao::store::Store;

use crate::{bulk, common};

/// The platform's admin key in the benchmarks' configuration.
pub const ADMIN_KEY: &str = "process-bench-admin-key";

/// A child process killed when dropped (a bench that panics leaves no server behind).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tongdao.toml` for a server on loopback: a free port, the admin key, the store
/// at `store_url`, no quiet hours, and one operator `mobile` (two binds, window 50)
/// for every `13…` number on the simulator at `sim_address`, `tps` submits a second
/// per bind at most (0: no limit). `http_extra` goes
/// into `[http]` (keys of its own), `extra` after it (sections of its own).
pub fn server_config(
    sim_address: &str,
    store_url: &str,
    http_extra: &str,
    extra: &str,
    tps: u32,
) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n{http_extra}\n[admin]\nkey = \"{ADMIN_KEY}\"\n\
         [store]\nurl = \"{store_url}\"\n\
         [compliance]\nquiet_hours = \"\"\n\
         {extra}\n\
         [[operators]]\nname = \"mobile\"\naddress = \"{sim_address}\"\nsystem_id = \"bench\"\npassword = \"pw\"\n\
         binds = 2\nwindow = 50\ntps = {tps}\nprefixes = [\"13\"]\nsource_addr = \"10661234\"\n"
    )
}

/// A tenant: partner `name` with the horoscope module (uploaded through the
/// registry, so active), an approved free service `code` and `n` subscribers
/// numbered from `first`, seeded by the bulk path. Returns its API key and the
/// service id.
pub async fn tenant(store: &Store, name: &str, code: &str, first: i64, n: i64) -> (String, i64) {
    let (partner, key) = partners::create(store, name, name).await.unwrap();
    common::registry(store)
        .upload(&partner, &common::guest("horoscope"), "bench")
        .await
        .unwrap();
    let service = bulk::approved_service(store, partner.id, code, "horoscope").await;
    bulk::subscribers(store, partner.id, service, first, n).await;
    (key.key, service)
}

/// The number users write to for `service_id`: the short code and its extension.
pub async fn service_number(store: &Store, service_id: i64) -> String {
    let live = tongdao::services::all_live(store).await.unwrap();
    let service = live
        .iter()
        .find(|s| s.id == service_id)
        .expect("the service is live");
    service.sender(&tongdao::mo::DialogueConfig::default().short_code)
}

/// A field of `/proc/PID/status` in kB (`VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Open file descriptors of a process (`/proc/PID/fd`).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// CPU time (user + system) of a process so far, in seconds (`/proc/PID/stat`).
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the `(comm)` field: state is field 3, utime 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // In clock ticks: 100 per second on Linux (x86-64 and aarch64).
    (ticks(11) + ticks(12)) / 100.0
}

/// Size in bytes of a file and its `-wal` beside it (0 for what is missing).
pub fn sqlite_bytes(db: &std::path::Path) -> u64 {
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    size(db) + size(std::path::Path::new(&wal))
}

/// Latencies of one kind of request, and its errors.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples: Vec<Duration>,
    pub errors: u64,
    /// The first few error texts, for the report.
    pub error_examples: Vec<String>,
}

impl Latencies {
    pub fn record(&mut self, took: Duration) {
        self.samples.push(took);
    }

    pub fn error(&mut self, what: String) {
        self.errors += 1;
        if self.error_examples.len() < 3 {
            self.error_examples.push(what);
        }
    }

    pub fn merge(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
        self.errors += other.errors;
        for e in other.error_examples {
            if self.error_examples.len() < 3 {
                self.error_examples.push(e);
            }
        }
    }

    pub fn count(&self) -> usize {
        self.samples.len()
    }

    /// The `p`-th percentile (0–100), nearest rank; zero with no samples.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((p / 100.0) * self.samples.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    pub fn max(&self) -> Duration {
        self.samples.iter().copied().max().unwrap_or_default()
    }
}

/// Milliseconds, one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}
