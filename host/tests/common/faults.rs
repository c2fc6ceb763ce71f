//! The fault-injection suite of issue 18 item 1: one paid
//! push through a real `tongdao serve` process, the SMSC simulator as a process of
//! its own (`tongdao smsc-sim`, faults changed over its HTTP hook) and the database
//! (a SQLite file, a database on the test PostgreSQL server, or a private PostgreSQL
//! instance the suite starts and restarts), with one fault injected during the push.
//! Afterwards every row is checked the same way:
//!
//! - **lost**: subscribers of the push without an MT that is `delivered` or finally
//!   failed with a reason, plus MTs marked delivered that the SMSC never got;
//! - **duplicated**: extra copies the SMSC accepted, and whether each belongs to an
//!   MT the relay marked `resent_unknown` (its unknown-outcome rule);
//! - **double-charged**: MTs charged more than once, or charged without being
//!   delivered (the charge pass runs twice);
//! - **reconciled**: each MT has one final event, charges equal delivered × price,
//!   and `GET /v1/stats` equals the records per service and operator, by hour, day
//!   and month.
//!
//! The short variant (`tests/faults.rs`) and the long one (`benches/faults.rs`) run
//! these scenarios; nothing here asserts, so a bench run prints every row.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tongdao::store::Store;
use tongdao_link::dice::Dice;

use crate::common::SimProcess;
use crate::{bulk, common, figures};

pub const ADMIN_KEY: &str = "fault-suite-admin-key";
/// The paid service's price per delivered MT.
const PRICE_FEN: i64 = 10;
/// The audience straddles this number: below it `telecom` (prefix 138), from it
/// `mobile` (139), two operators (two peers of the SMSC) with two binds each.
const SPLIT: i64 = 13_900_000_000;
/// Share of MTs the SMSC reports `UNDELIV`, so final failures with reasons occur.
const UNDELIVERABLE: f64 = 0.05;
/// Longer than the SMPP client's response timeout (10 s): submits written before
/// the stall have an unknown outcome.
const STALL_MS: u64 = 12_000;
/// Throttled answers in a storm.
const STORM: u64 = 100;

/// A fault injected during the push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of the server at a moment picked by the seed, then a restart.
    Kill9 { seed: u64 },
    /// 1 % of submits drop the connection (half of them accepted first).
    Disconnects,
    /// The SMSC answers nothing for 12 s, then resumes.
    Stall,
    /// Receipts 1.5–4 s after each submit.
    SlowReceipts,
    /// 30 % of receipts sent twice.
    DuplicateReceipts,
    /// 20 % of submits followed by a receipt for an id never given to that peer.
    UnknownReceipts,
    /// 95 % of submits throttled until 100 throttles were answered.
    ThrottlingStorm,
    /// Every link dropped, then each new bind dropped 200 ms after it, for 12 binds.
    FlappingLink,
    /// A private PostgreSQL instance stopped (`-m immediate`) and started again.
    PostgresRestart,
    /// The SQLite volume (a tmpfs) filled to the last byte, then freed.
    DiskFull,
}

impl Fault {
    /// Every fault but `kill -9`, once each.
    pub const OTHERS: [Fault; 9] = [
        Fault::Disconnects,
        Fault::Stall,
        Fault::SlowReceipts,
        Fault::DuplicateReceipts,
        Fault::UnknownReceipts,
        Fault::ThrottlingStorm,
        Fault::FlappingLink,
        Fault::PostgresRestart,
        Fault::DiskFull,
    ];

    pub fn name(self) -> String {
        match self {
            Fault::Kill9 { seed } => format!("kill -9 (seed {seed})"),
            Fault::Disconnects => "SMSC disconnects".into(),
            Fault::Stall => "SMSC stall 12 s".into(),
            Fault::SlowReceipts => "slow receipts".into(),
            Fault::DuplicateReceipts => "duplicate receipts".into(),
            Fault::UnknownReceipts => "unknown receipts".into(),
            Fault::ThrottlingStorm => "throttling storm".into(),
            Fault::FlappingLink => "flapping link".into(),
            Fault::PostgresRestart => "PostgreSQL restart".into(),
            Fault::DiskFull => "disk full (SQLite)".into(),
        }
    }

    /// The simulator's start-time flags for this fault.
    fn sim_args(self) -> Vec<String> {
        let mut args: Vec<String> = match self {
            Fault::SlowReceipts => vec!["--dlr-delay-ms", "1500", "--dlr-jitter-ms", "2500"],
            _ => vec!["--dlr-delay-ms", "5"],
        }
        .into_iter()
        .map(String::from)
        .collect();
        match self {
            // Every real receipt says delivered: a failed MT would be one an unknown
            // receipt was applied to.
            Fault::UnknownReceipts => args.extend(["--unknown-receipt".into(), "0.2".into()]),
            Fault::DuplicateReceipts => args.extend([
                "--duplicate-receipt".into(),
                "0.3".into(),
                "--undeliverable".into(),
                UNDELIVERABLE.to_string(),
            ]),
            _ => args.extend(["--undeliverable".into(), UNDELIVERABLE.to_string()]),
        }
        args
    }
}

/// The SP_Id the CMPP rows log in with.
const CMPP_SP_ID: &str = "901234";

/// The operator gateway the push goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Two SMPP 3.4 operators (138, 139) on one SMSC simulator, two binds each.
    Smpp,
    /// One CMPP 3.0 operator (both prefixes) on the ISMG simulator, two connections.
    Cmpp3,
    /// One SGIP 1.2 operator (both prefixes) on the SMG simulator: our link out,
    /// and the SMG's link back to our listener for its Reports.
    Sgip12,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Smpp => "SMPP 3.4",
            Peer::Cmpp3 => "CMPP 3.0",
            Peer::Sgip12 => "SGIP 1.2",
        }
    }

    /// `smsc-sim --protocol`.
    fn protocol(self) -> &'static str {
        match self {
            Peer::Smpp => "smpp",
            Peer::Cmpp3 => "cmpp3",
            Peer::Sgip12 => "sgip12",
        }
    }
}

/// Where the server keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// A fresh database on the server of `TONGDAO_TEST_DATABASE_URL`.
    Postgres,
}

/// One line of the table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub fault: String,
    pub store: &'static str,
    pub peer: &'static str,
    pub messages: i64,
    pub lost: i64,
    pub duplicated: usize,
    /// Duplicates no `resent_unknown` mark accounts for (extra outbox rows included).
    pub unmarked: usize,
    pub double_charged: i64,
    /// Final events, charges and statistics all equal the records.
    pub reconciled: bool,
    /// Everything that went wrong, in words (empty for a good row).
    pub problems: Vec<String>,
    /// What the fault did (the moment of a kill, how long an outage lasted).
    pub note: String,
    /// Why the row did not run, and whether CI must treat that as a failure.
    pub skipped: Option<(String, bool)>,
    pub seconds: f64,
}

impl Row {
    /// Ran, and nothing was lost, double-charged, unmarked or unreconciled.
    pub fn clean(&self) -> bool {
        self.skipped.is_none()
            && self.lost == 0
            && self.unmarked == 0
            && self.double_charged == 0
            && self.reconciled
            && self.problems.is_empty()
    }
}

/// The table: fault | store | messages | lost | duplicated (marked) | double-charged
/// | reconciled | seconds | note.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| fault | store | peer | messages | lost | duplicated (all marked?) | double-charged | stats and charges reconcile | s | what happened |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        if let Some((why, _)) = &r.skipped {
            out.push_str(&format!(
                "| {} | {} | {} | – | – | – | – | – | – | not run: {why} |\n",
                r.fault, r.store, r.peer
            ));
            continue;
        }
        let marked = if r.unmarked == 0 {
            "yes".to_string()
        } else {
            format!("NO: {} unmarked", r.unmarked)
        };
        let mut note = r.note.clone();
        if !r.problems.is_empty() {
            note.push_str(&format!(" PROBLEMS: {}", r.problems.join("; ")));
        }
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} ({marked}) | {} | {} | {:.0} | {note} |\n",
            r.fault,
            r.store,
            r.peer,
            r.messages,
            r.lost,
            r.duplicated,
            r.double_charged,
            if r.reconciled { "yes" } else { "NO" },
            r.seconds,
        ));
    }
    out
}

/// A `tongdao serve` process, killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    pub fn start(dir: &Path) -> Self {
        let (child, base) = common::start_server(dir);
        Self { child, base }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of `/proc/self/status` (`Uid:`, `CapEff:`).
fn proc_status(field: &str) -> Option<String> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
}

/// Whether the effective user is root.
fn is_root() -> bool {
    proc_status("Uid:")
        .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false)
}

/// Whether this process may mount file systems (CAP_SYS_ADMIN in its effective set).
fn may_mount() -> bool {
    proc_status("CapEff:")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|caps| caps & (1 << 21) != 0)
}

/// A PostgreSQL instance of the suite's own (initdb into a temporary directory,
/// `pg_ctl` on a free port), so restarting it disturbs no other test. As root it runs
/// as the `postgres` user (initdb refuses root).
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl PrivatePostgres {
    /// The newest `/usr/lib/postgresql/*/bin` with `pg_ctl` and `initdb`.
    fn binaries() -> Option<PathBuf> {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                (bin.join("pg_ctl").exists() && bin.join("initdb").exists())
                    .then_some((version, bin))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, bin)| bin)
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Start one; `Err` says why it cannot (no binaries, initdb failed).
    pub fn start() -> Result<Self, String> {
        let bin = Self::binaries()
            .ok_or("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !status.success() {
                return Err("chown of the data directory to postgres failed".into());
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let pg = Self { dir, bin, port };
        let data = pg.data();
        pg.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        )?;
        pg.pg_start()?;
        Ok(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn pg_start(&self) -> Result<(), String> {
        let data = self.data();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        )
    }

    /// A crash and a restart: `pg_ctl stop -m immediate` (every connection cut, no
    /// checkpoint), then start again (crash recovery), waiting until it accepts
    /// connections.
    pub fn restart(&self) -> Result<(), String> {
        let data = self.data();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])?;
        self.pg_start()
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A small tmpfs mounted for the server's data directory; unmounted when dropped.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mount `size_mb` MiB at `path`. `Err((why, must_work))`: `must_work` when this
    /// process has CAP_SYS_ADMIN, so the mount should have worked.
    pub fn mount(path: &Path, size_mb: u64) -> Result<Self, (String, bool)> {
        std::fs::create_dir_all(path).map_err(|e| (e.to_string(), true))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(path)
            .output();
        match out {
            Ok(out) if out.status.success() => Ok(Self {
                path: path.to_path_buf(),
            }),
            Ok(out) => Err((
                format!(
                    "mount -t tmpfs refused: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                may_mount(),
            )),
            Err(e) => Err((format!("no mount command: {e}"), may_mount())),
        }
    }

    /// Fill the volume to the last byte with `filler`; returns the bytes written.
    pub fn fill(&self) -> u64 {
        let mut file = std::fs::File::create(self.path.join("filler")).unwrap();
        let mut written = 0u64;
        for chunk in [1 << 20, 1 << 12, 1] {
            let block = vec![0u8; chunk];
            while file.write_all(&block).is_ok() {
                written += chunk as u64;
            }
        }
        let _ = file.sync_all();
        written
    }

    /// Free what [`fill`](Self::fill) took.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.path.join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// One SQL count, `None` while the database cannot answer (a restart).
async fn try_count(store: &Store, sql: &str, bind: i64) -> Option<i64> {
    let row: Result<(i64,), _> = sqlx::query_as(sql).bind(bind).fetch_one(store.pool()).await;
    row.ok().map(|(n,)| n)
}

/// Poll `sql` (with `$1` = `bind`) until it counts at least `at_least`, tolerating a
/// database that is away; `false` after `timeout`.
async fn until_count(
    store: &Store,
    sql: &str,
    bind: i64,
    at_least: i64,
    timeout: Duration,
) -> bool {
    let started = Instant::now();
    loop {
        if try_count(store, sql, bind)
            .await
            .is_some_and(|n| n >= at_least)
        {
            return true;
        }
        if started.elapsed() >= timeout {
            return false;
        }
        tokio::time::sleep(common::POLL).await;
    }
}

const FINAL_OF_RUN: &str = "SELECT COUNT(*) FROM messages WHERE push_run_id = $1 AND status IN ('delivered', 'failed', 'expired')";
const PAST_SUBMIT_OF_RUN: &str = "SELECT COUNT(*) FROM messages WHERE push_run_id = $1
     AND status IN ('submitted', 'delivered', 'failed', 'expired')";
const QUEUED_OF_RUN: &str = "SELECT queued FROM push_runs WHERE id = $1";

/// Submits per second per bind: the push of `n` takes about 5 s over the four binds,
/// so every fault lands in the middle of it whatever `n` is.
fn tps(n: i64) -> i64 {
    (n / 20).max(10)
}

/// The server's configuration: the store, the relay's and scheduler's quick
/// retries, the operators of `peer` (SGIP: with the listener at `sgip_listen`).
fn config(sim: &SimProcess, store_url: &str, n: i64, peer: Peer, sgip_listen: &str) -> String {
    let operator = |name: &str, system_id: &str, prefixes: &str| {
        let (protocol, binds, table) = match peer {
            Peer::Smpp => ("smpp", 2, String::new()),
            Peer::Cmpp3 => (
                "cmpp3",
                2,
                "[operators.cmpp]\nservice_id = \"HELP\"\n".into(),
            ),
            Peer::Sgip12 => (
                "sgip12",
                1,
                format!(
                    "[operators.sgip]\nnode_id = 3010099001\ncorp_id = \"12345\"\nservice_type = \"HELP\"\n\
                     listen = \"{sgip_listen}\"\nsmg_login = \"smg\"\nsmg_password = \"pw\"\n"
                ),
            ),
        };
        format!(
            "[[operators]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\naddress = \"{}\"\n\
             system_id = \"{system_id}\"\npassword = \"pw\"\n\
             binds = {binds}\nwindow = 20\ntps = {}\nprefixes = [{prefixes}]\nsource_addr = \"10661234\"\n\
             reconnect_initial_ms = 100\nreconnect_max_ms = 1000\nreconnect_stable_secs = 1\n{table}",
            sim.address,
            tps(n)
        )
    };
    let operators = match peer {
        Peer::Smpp => {
            operator("mobile", "td-mobile", "\"139\"")
                + &operator("telecom", "td-telecom", "\"138\"")
        }
        Peer::Cmpp3 => operator("mobile", CMPP_SP_ID, "\"138\", \"139\""),
        Peer::Sgip12 => operator("unicom", "tongdao", "\"138\", \"139\""),
    };
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[admin]\nkey = \"{ADMIN_KEY}\"\n\
         [store]\nurl = \"{store_url}\"\n\
         [relay]\nlease_secs = 2\nretry_initial_ms = 100\nretry_max_ms = 1000\n\
         [compliance]\nquiet_hours = \"\"\n\
         [schedule]\ntick_ms = 100\nbatch = 100\nlease_secs = 2\n\
         {operators}"
    )
}

/// Run one scenario: `n` subscribers of a paid service, one push through `peer`,
/// `fault` during it. Over CMPP and SGIP only `kill -9` (the simulators of those
/// protocols take their faults at start, not over the hook).
pub async fn run(fault: Fault, n: i64, backend: Backend, peer: Peer) -> Row {
    let started = Instant::now();
    let mut row = Row {
        fault: fault.name(),
        store: match (fault, backend) {
            (Fault::PostgresRestart, _) => "postgres (private)",
            (Fault::DiskFull, _) | (_, Backend::Sqlite) => "sqlite",
            (_, Backend::Postgres) => "postgres",
        },
        peer: peer.name(),
        messages: n,
        ..Row::default()
    };
    if peer != Peer::Smpp && !matches!(fault, Fault::Kill9 { .. }) {
        row.skipped = Some((
            format!("over {} only kill -9 is injected", peer.name()),
            false,
        ));
        return row;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tongdao-data");
    // What the fault needs before anything starts.
    let mut tmpfs = None;
    let mut private_pg = None;
    let mut shared_pg_db = None;
    let url = match fault {
        Fault::DiskFull => {
            match Tmpfs::mount(&data, 48) {
                Ok(t) => tmpfs = Some(t),
                Err(why) => {
                    row.skipped = Some(why);
                    return row;
                }
            }
            format!("sqlite://{}", data.join("tongdao.db").display())
        }
        Fault::PostgresRestart => match PrivatePostgres::start() {
            Ok(pg) => {
                let url = pg.url();
                private_pg = Some(pg);
                url
            }
            Err(why) => {
                // CI provides the PostgreSQL server binaries.
                row.skipped = Some((why, true));
                return row;
            }
        },
        _ if backend == Backend::Postgres => match common::postgres_url().await {
            Some(url) => {
                shared_pg_db = Some(url.clone());
                url
            }
            None => {
                row.skipped = Some(("TONGDAO_TEST_DATABASE_URL is not set".into(), true));
                return row;
            }
        },
        _ => format!("sqlite://{}", data.join("tongdao.db").display()),
    };
    let sgip_listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut sim_args = vec!["--protocol".to_string(), peer.protocol().to_string()];
    if peer == Peer::Cmpp3 {
        // The ISMG signs its login answer with the shared secret.
        sim_args.extend(["--system-id", CMPP_SP_ID, "--password", "pw"].map(String::from));
    }
    if peer == Peer::Sgip12 {
        sim_args.extend(
            [
                "--sp-address",
                &sgip_listen,
                "--sp-login",
                "smg",
                "--sp-password",
                "pw",
            ]
            .map(String::from),
        );
    }
    sim_args.extend(fault.sim_args());
    let sim = SimProcess::start(&sim_args);
    std::fs::write(
        dir.path().join("tongdao.toml"),
        config(&sim, &url, n, peer, &sgip_listen),
    )
    .unwrap();
    let store = Store::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();

    // A paid per-message push service with n subscribers, half on each operator.
    let (partner, key) = tongdao::partners::create(&store, "stars", "Stars")
        .await
        .unwrap();
    common::registry(&store)
        .upload(&partner, &common::guest("horoscope"), "test")
        .await
        .unwrap();
    let service = bulk::approved_service_with(
        &store,
        partner.id,
        "XZ",
        "horoscope",
        tongdao::services::FeeType::PerMessage,
        PRICE_FEN,
        None,
    )
    .await;
    let free = bulk::approved_service(&store, partner.id, "XH", "horoscope").await;
    bulk::subscribers(&store, partner.id, service, SPLIT - n / 2, n).await;

    let mut server = Server::start(dir.path());
    let http = reqwest::Client::new();
    let response = common::post_json(
        &http,
        &format!("{}/v1/services/{service}/push", server.base),
        &key.key,
        &json!({}),
    )
    .await;
    let run_id = response["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("push: {response}"));

    let ctx = Injection {
        store: &store,
        sim: &sim,
        run_id,
        n,
        dir: dir.path(),
        key: &key.key,
        free_service: free,
    };
    let (note, evidence) = inject(
        fault,
        &ctx,
        &mut server,
        tmpfs.as_ref(),
        private_pg.as_ref(),
        &mut row.problems,
    )
    .await;
    row.note = note;

    // Every MT final (the run's and any other), the run final.
    let done = until_count(
        &store,
        "SELECT CASE WHEN (SELECT COUNT(*) FROM messages
                  WHERE status NOT IN ('delivered', 'failed', 'expired', 'cancelled')) = 0
              AND (SELECT status FROM push_runs WHERE id = $1) IN ('completed', 'failed', 'skipped', 'cancelled', 'expired')
         THEN 1 ELSE 0 END",
        run_id,
        1,
        Duration::from_secs(120),
    )
    .await;
    if !done {
        row.problems
            .push("not every MT final after 120 s".to_string());
    }
    if !server.alive() {
        row.problems.push("the server exited".into());
        server = Server::start(dir.path());
    }
    // The charge pass, twice: the second charges nothing more.
    for _ in 0..2 {
        let response = http
            .post(format!(
                "{}/v1/admin/billing/charge-pass?scan=full",
                server.base
            ))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        if !response.status().is_success() {
            row.problems.push(format!(
                "charge pass: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            ));
        }
    }
    evidence_check(fault, &sim, evidence, &mut row.problems).await;
    check(
        &mut row,
        &store,
        &sim,
        &server.base,
        run_id,
        service,
        partner.id,
    )
    .await;
    drop(server);
    store.close().await;
    if let Some(url) = shared_pg_db {
        drop_database(&url).await;
    }
    drop(private_pg);
    drop(tmpfs);
    if !row.problems.is_empty() {
        // Kept for whoever reads the failure: the server's log and configuration.
        row.problems
            .push(format!("server log kept in {}", dir.keep().display()));
    }
    row.seconds = started.elapsed().as_secs_f64();
    row
}

/// Drop a database made by `common::postgres_url`.
async fn drop_database(url: &str) {
    let Ok(base) = std::env::var("TONGDAO_TEST_DATABASE_URL") else {
        return;
    };
    let name = url.rsplit_once('/').unwrap().1;
    let admin = Store::connect(&base, 1).await.unwrap();
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(admin.pool())
        .await;
    admin.close().await;
}

struct Injection<'a> {
    store: &'a Store,
    sim: &'a SimProcess,
    run_id: i64,
    n: i64,
    dir: &'a Path,
    key: &'a str,
    free_service: i64,
}

impl Injection<'_> {
    /// Wait until `sql` (of the run) reaches `at_least`.
    async fn reached(&self, sql: &str, at_least: i64) -> bool {
        until_count(
            self.store,
            sql,
            self.run_id,
            at_least,
            Duration::from_secs(120),
        )
        .await
    }

    async fn count(&self, sql: &str) -> i64 {
        try_count(self.store, sql, self.run_id).await.unwrap_or(-1)
    }
}

/// The faults the simulator counts, to prove the fault happened: (counter, at least).
type Evidence = Option<(&'static str, u64)>;

/// Inject `fault` into the running push; returns what happened and the simulator
/// counter that must show it.
async fn inject(
    fault: Fault,
    c: &Injection<'_>,
    server: &mut Server,
    tmpfs: Option<&Tmpfs>,
    pg: Option<&PrivatePostgres>,
    problems: &mut Vec<String>,
) -> (String, Evidence) {
    let base_faults = json!({ "undeliverable": UNDELIVERABLE });
    match fault {
        Fault::Kill9 { seed } => {
            let mut dice = Dice::new(seed);
            let phase = (dice.next() * 3.0) as usize;
            let share = 0.05 + 0.85 * dice.next();
            let at = ((c.n as f64) * share) as i64;
            let (what, sql) = [
                ("fan-out", QUEUED_OF_RUN),
                ("submits", PAST_SUBMIT_OF_RUN),
                ("receipts", FINAL_OF_RUN),
            ][phase.min(2)];
            if !c.reached(sql, at).await {
                problems.push(format!("the push never reached {what} {at}"));
            }
            let (queued, past, finals) = (
                c.count(QUEUED_OF_RUN).await,
                c.count(PAST_SUBMIT_OF_RUN).await,
                c.count(FINAL_OF_RUN).await,
            );
            server.kill9();
            *server = Server::start(c.dir);
            (
                format!(
                    "killed at {what} {:.0} %: {queued} queued, {past} past submit, {finals} final",
                    share * 100.0
                ),
                None,
            )
        }
        Fault::Disconnects => {
            c.sim
                .set_faults(json!({ "undeliverable": UNDELIVERABLE, "disconnect": 0.01 }))
                .await;
            (
                "1 % of submits drop the link".into(),
                Some(("disconnects", 1)),
            )
        }
        Fault::Stall => {
            c.reached(FINAL_OF_RUN, c.n / 5).await;
            c.sim
                .set_faults(json!({ "undeliverable": UNDELIVERABLE, "stall_ms": STALL_MS }))
                .await;
            let finals = c.count(FINAL_OF_RUN).await;
            (
                format!("stalled {} s at {finals} final", STALL_MS / 1000),
                Some(("stalls", 1)),
            )
        }
        Fault::SlowReceipts => (
            "receipts 1.5–4 s after their submit".into(),
            Some(("receipts_acked", 1)),
        ),
        Fault::DuplicateReceipts => (
            "30 % of receipts sent twice".into(),
            Some(("receipts_duplicated", 1)),
        ),
        Fault::UnknownReceipts => (
            "20 % of submits followed by a receipt for another peer's or a never-issued id".into(),
            Some(("receipts_unknown", 1)),
        ),
        Fault::ThrottlingStorm => {
            c.reached(FINAL_OF_RUN, c.n / 10).await;
            let before = c.sim.counter("throttled").await;
            c.sim
                .set_faults(json!({ "undeliverable": UNDELIVERABLE, "throttle": 0.95 }))
                .await;
            let storm = Instant::now();
            while c.sim.counter("throttled").await < before + STORM
                && storm.elapsed() < Duration::from_secs(60)
            {
                tokio::time::sleep(common::POLL).await;
            }
            c.sim.set_faults(base_faults).await;
            (
                format!("95 % throttled for {:.1} s", storm.elapsed().as_secs_f64()),
                Some(("throttled", STORM)),
            )
        }
        Fault::FlappingLink => {
            c.reached(FINAL_OF_RUN, c.n / 10).await;
            let before = c.sim.counter("binds").await;
            c.sim
                .set_faults(json!({
                    "undeliverable": UNDELIVERABLE,
                    "drop_after_bind_ms": 200,
                    "disconnect_all": true,
                }))
                .await;
            let flap = Instant::now();
            while c.sim.counter("binds").await < before + 12
                && flap.elapsed() < Duration::from_secs(60)
            {
                tokio::time::sleep(common::POLL).await;
            }
            c.sim.set_faults(base_faults).await;
            (
                format!(
                    "links dropped 200 ms after each bind for {:.1} s",
                    flap.elapsed().as_secs_f64()
                ),
                Some(("binds", before + 12)),
            )
        }
        Fault::PostgresRestart => {
            c.reached(FINAL_OF_RUN, c.n / 5).await;
            let finals = c.count(FINAL_OF_RUN).await;
            let outage = Instant::now();
            if let Err(e) = pg.expect("a private PostgreSQL").restart() {
                problems.push(e);
            }
            (
                format!(
                    "crashed and restarted at {finals} final ({:.1} s down)",
                    outage.elapsed().as_secs_f64()
                ),
                None,
            )
        }
        Fault::DiskFull => disk_full(c, server, tmpfs.expect("a tmpfs"), problems).await,
    }
}

/// Fill the volume during the push; the server must fail cleanly (alive, errors as
/// JSON, the database intact), then resume once space is back.
async fn disk_full(
    c: &Injection<'_>,
    server: &mut Server,
    tmpfs: &Tmpfs,
    problems: &mut Vec<String>,
) -> (String, Evidence) {
    c.reached(FINAL_OF_RUN, c.n / 10).await;
    let filled = tmpfs.fill();
    let finals = c.count(FINAL_OF_RUN).await;
    // Writes through the API until one is refused for want of space.
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut refused = None;
    let mut k = 0;
    while refused.is_none() && started.elapsed() < Duration::from_secs(30) {
        k += 1;
        let response = http
            .post(format!(
                "{}/v1/services/{}/subscriptions",
                server.base, c.free_service
            ))
            .bearer_auth(c.key)
            .json(&json!({ "msisdn": format!("{}", 13_950_000_000i64 + k) }))
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_server_error() => {
                let status = r.status();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                if body["error"]["code"].as_str().is_none()
                    || body["error"]["message"].as_str().is_none()
                {
                    problems.push(format!("a refused write answered {status} {body}"));
                }
                refused = Some(format!("{status} {}", body["error"]["code"]));
            }
            Ok(_) => tokio::time::sleep(common::POLL).await,
            Err(e) => {
                problems.push(format!("the API did not answer with the disk full: {e}"));
                break;
            }
        }
    }
    let progress_while_full = c.count(FINAL_OF_RUN).await - finals;
    if !server.alive() {
        problems.push("the server died when the disk filled".into());
    }
    let integrity: Option<(String,)> = sqlx::query_as("PRAGMA integrity_check")
        .fetch_optional(c.store.pool())
        .await
        .ok()
        .flatten();
    if integrity.as_ref().map(|(s,)| s.as_str()) != Some("ok") {
        problems.push(format!("integrity check with the disk full: {integrity:?}"));
    }
    tmpfs.free();
    let note = match refused {
        Some(answer) => format!(
            "filled ({} MiB) at {finals} final; API writes refused ({answer}) after {k} tries; \
             {progress_while_full} more final while full; freed",
            filled >> 20
        ),
        None => {
            problems.push("no write was refused with the disk full".into());
            format!(
                "filled ({} MiB) at {finals} final; no write refused",
                filled >> 20
            )
        }
    };
    (note, None)
}

async fn evidence_check(
    fault: Fault,
    sim: &SimProcess,
    evidence: Evidence,
    problems: &mut Vec<String>,
) {
    if let Some((counter, at_least)) = evidence {
        let got = sim.counter(counter).await;
        if got < at_least {
            problems.push(format!(
                "the fault did not happen: simulator {counter} = {got}, wanted at least {at_least} ({})",
                fault.name()
            ));
        }
    }
}

async fn count(store: &Store, sql: &str, bind: i64) -> i64 {
    // The database may have been restarted: a broken pooled connection fails once.
    for _ in 0..50 {
        if let Some(n) = try_count(store, sql, bind).await {
            return n;
        }
        tokio::time::sleep(common::POLL).await;
    }
    panic!("the database does not answer: {sql}");
}

/// The checks of every row (see the module's documentation).
async fn check(
    row: &mut Row,
    store: &Store,
    sim: &SimProcess,
    base: &str,
    run_id: i64,
    service: i64,
    partner_id: i64,
) {
    let n = row.messages;
    let run: Option<(String, i64, i64)> =
        sqlx::query_as("SELECT status, subscribers, queued FROM push_runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(store.pool())
            .await
            .unwrap();
    if run != Some(("completed".into(), n, n)) {
        row.problems.push(format!("run: {run:?}"));
    }
    // Lost: a subscriber without a delivered MT or a final failure with a reason.
    row.lost = count(
        store,
        "SELECT COUNT(*) FROM subscriptions s WHERE s.service_id = $1 AND NOT EXISTS (
           SELECT 1 FROM messages m WHERE m.subscription_id = s.id AND m.push_run_id IS NOT NULL
             AND (m.status = 'delivered'
                  OR (m.status IN ('failed', 'expired') AND COALESCE(m.failure_reason, '') <> '')))",
        service,
    )
    .await;
    let per_destination = sim.destinations().await;
    let delivered: Vec<(String,)> = sqlx::query_as(
        "SELECT recipient FROM messages WHERE push_run_id = $1 AND status = 'delivered'",
    )
    .bind(run_id)
    .fetch_all(store.pool())
    .await
    .unwrap();
    let phantom = delivered
        .iter()
        .filter(|(r,)| !per_destination.contains_key(r))
        .count() as i64;
    if phantom > 0 {
        row.problems
            .push(format!("{phantom} MTs delivered that the SMSC never got"));
        row.lost += phantom;
    }
    // Duplicated: copies at the SMSC, and extra outbox rows for one subscriber.
    let dup = common::duplicates_at_smsc(store, &per_destination).await;
    row.duplicated = dup.duplicates;
    row.unmarked = dup.unmarked_numbers.len() + dup.duplicates.saturating_sub(dup.marked);
    let extra_rows = count(
        store,
        "SELECT COUNT(*) - COUNT(DISTINCT subscription_id) FROM messages WHERE push_run_id = $1",
        run_id,
    )
    .await;
    if extra_rows > 0 {
        row.problems
            .push(format!("{extra_rows} extra outbox rows for one subscriber"));
        row.unmarked += extra_rows as usize;
    }
    // Double-charged: more than one charge for an MT, or one for an MT not delivered.
    row.double_charged = count(
        store,
        "SELECT COUNT(*) FROM (SELECT message_id FROM charge_events WHERE kind = 'per-message'
           AND partner_id = $1 GROUP BY message_id HAVING COUNT(*) > 1) AS twice",
        partner_id,
    )
    .await
        + count(
            store,
            "SELECT COUNT(*) FROM charge_events e JOIN messages m ON m.id = e.message_id
             WHERE e.partner_id = $1 AND m.status <> 'delivered'",
            partner_id,
        )
        .await;
    // Reconciled: one final event per MT, charges = delivered × price, statistics =
    // records.
    let mut reconciled = true;
    let final_twice = count(
        store,
        "SELECT COUNT(*) FROM (SELECT message_id FROM message_events
           WHERE status IN ('delivered', 'failed', 'expired')
           GROUP BY message_id HAVING COUNT(*) > $1) AS twice",
        1,
    )
    .await;
    if final_twice > 0 {
        row.problems
            .push(format!("{final_twice} MTs with more than one final event"));
        reconciled = false;
    }
    let delivered_all = count(
        store,
        "SELECT COUNT(*) FROM messages WHERE partner_id = $1 AND status = 'delivered' AND charge_plan = 'per-message'",
        partner_id,
    )
    .await;
    let (charges, revenue): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(amount_fen), 0) AS BIGINT) FROM charge_events
         WHERE partner_id = $1 AND kind = 'per-message'",
    )
    .bind(partner_id)
    .fetch_one(store.pool())
    .await
    .unwrap();
    if (charges, revenue) != (delivered_all, delivered_all * PRICE_FEN) {
        row.problems.push(format!(
            "charges {charges} ({revenue} fen) for {delivered_all} delivered paid MTs"
        ));
        reconciled = false;
    }
    let want = figures::records(store, partner_id).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = figures::api_stats(base, "stars", ADMIN_KEY, "day").await;
    while got != want && Instant::now() < deadline {
        tokio::time::sleep(common::POLL).await;
        got = figures::api_stats(base, "stars", ADMIN_KEY, "day").await;
    }
    for granularity in ["hour", "month"] {
        if got == want {
            got = figures::api_stats(base, "stars", ADMIN_KEY, granularity).await;
        }
    }
    if got != want {
        row.problems
            .push(format!("statistics {got:?} against the records {want:?}"));
        reconciled = false;
    }
    row.reconciled = reconciled;
    // Unknown receipts: every real receipt said delivered, so a failed MT is one a
    // receipt not its own was applied to.
    let failed = count(
        store,
        "SELECT COUNT(*) FROM messages WHERE push_run_id = $1 AND status = 'failed'",
        run_id,
    )
    .await;
    if row.fault == Fault::UnknownReceipts.name() && failed > 0 {
        row.problems
            .push(format!("{failed} MTs failed by a receipt not their own"));
    }
}
