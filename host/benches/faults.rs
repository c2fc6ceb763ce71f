//! Issue 18 item 1, the long variant of the fault-injection suite (R-1.3, R-2.6,
//! `kill -9` of the real server at 20 seeded moments of a push, then every
//! other fault once (SMSC disconnects, a stall, slow, duplicate and unknown
//! receipts, a throttling storm, a flapping link, a PostgreSQL crash and restart, a
//! full SQLite disk), each with the server, `tongdao smsc-sim` and the database as
//! separate processes (scenarios shared with `tests/faults.rs`: `common/faults.rs`).
//! Prints the table (fault | store | messages | lost | duplicated (marked) |
//! double-charged | reconciled) and one summary line:
//! `faults: rows=… messages=… lost=… duplicated=… unmarked=… double_charged=… unreconciled=… not_run=…`.
//!
//! `cargo bench --workspace --bench faults [-- N] [--seeds=K] [--postgres] [--peers] [--only=TEXT]`
//! (N messages per row, default 3,000; K kill seeds, default 20; `--postgres`: the
//! kill and SMSC rows again on a fresh database beside `TONGDAO_TEST_DATABASE_URL`;
//! `--peers`: up to 5 kill seeds again over a CMPP 3.0 and an SGIP 1.2 gateway;
//! `--only`: the rows whose "fault over peer" contains TEXT, e.g. `--only=SGIP`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/bulk.rs"]
mod bulk;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/faults.rs"]
mod faults;
#[path = "../tests/common/figures.rs"]
mod figures;

use faults::{Backend, Fault, Peer};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: i64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(3_000);
    let seeds: u64 = args
        .iter()
        .find_map(|a| a.strip_prefix("--seeds=")?.parse().ok())
        .unwrap_or(20);
    let postgres = args.iter().any(|a| a == "--postgres");
    let peers = args.iter().any(|a| a == "--peers");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut plan: Vec<(Fault, Backend)> = (1..=seeds)
        .map(|seed| (Fault::Kill9 { seed }, Backend::Sqlite))
        .collect();
    plan.extend(Fault::OTHERS.iter().map(|f| (*f, Backend::Sqlite)));
    if postgres {
        plan.extend((1..=seeds.min(5)).map(|seed| (Fault::Kill9 { seed }, Backend::Postgres)));
        plan.extend(
            Fault::OTHERS
                .iter()
                .filter(|f| !matches!(f, Fault::PostgresRestart | Fault::DiskFull))
                .map(|f| (*f, Backend::Postgres)),
        );
    }
    let mut plan: Vec<(Fault, Backend, Peer)> =
        plan.into_iter().map(|(f, b)| (f, b, Peer::Smpp)).collect();
    if peers {
        for peer in [Peer::Cmpp3, Peer::Sgip12] {
            plan.extend(
                (1..=seeds.min(5)).map(|seed| (Fault::Kill9 { seed }, Backend::Sqlite, peer)),
            );
        }
    }
    // `--only=TEXT`: the rows whose "fault over peer" contains TEXT.
    if let Some(only) = args.iter().find_map(|a| a.strip_prefix("--only=")) {
        plan.retain(|(f, _, p)| format!("{} over {}", f.name(), p.name()).contains(only));
    }
    let mut rows = Vec::new();
    for (fault, backend, peer) in plan {
        let row = rt.block_on(faults::run(fault, n, backend, peer));
        eprintln!(
            "{} on {} over {}: {} ({:.0} s)",
            row.fault,
            row.store,
            row.peer,
            if row.clean() {
                "clean".to_string()
            } else {
                format!("{row:?}")
            },
            row.seconds
        );
        rows.push(row);
    }
    println!("{}", faults::table(&rows));
    let ran: Vec<&faults::Row> = rows.iter().filter(|r| r.skipped.is_none()).collect();
    println!(
        "faults: rows={} messages={} lost={} duplicated={} unmarked={} double_charged={} unreconciled={} not_run={}",
        ran.len(),
        ran.iter().map(|r| r.messages).sum::<i64>(),
        ran.iter().map(|r| r.lost).sum::<i64>(),
        ran.iter().map(|r| r.duplicated).sum::<usize>(),
        ran.iter().map(|r| r.unmarked).sum::<usize>(),
        ran.iter().map(|r| r.double_charged).sum::<i64>(),
        ran.iter()
            .filter(|r| !r.reconciled || !r.problems.is_empty())
            .count(),
        rows.len() - ran.len(),
    );
}
