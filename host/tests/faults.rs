//! Issue 18 item 1, the short variant of the fault-injection suite (R-1.3, R-2.6,
//! the real `tongdao serve`, `tongdao smsc-sim` and the database as separate
//! processes; one paid push per fault (`kill -9` at three seeded moments, SMSC
//! disconnects, a stall, slow, duplicate and unknown receipts, a throttling storm, a
//! flapping link, a PostgreSQL crash and restart, the SQLite volume full), and
//! `kill -9` over a CMPP 3.0 and an SGIP 1.2 gateway. After each: nothing
//! lost, every duplicate at the SMSC marked, nothing charged twice, charges and
//! `GET /v1/stats` equal to the records. The long variant is `benches/faults.rs`
//! (20 seeds of `kill -9`, more messages); the scenarios are shared
//! (`common/faults.rs`).

#![allow(clippy::unwrap_used)]

#[path = "common/bulk.rs"]
mod bulk;
mod common;
#[path = "common/faults.rs"]
mod faults;
#[path = "common/figures.rs"]
mod figures;

use faults::{Backend, Fault, Peer};

/// Messages per fault: enough for every fault to land in the middle of a push.
const MESSAGES: i64 = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item1_every_fault_loses_nothing_charges_nothing_twice_and_marks_duplicates() {
    let mut plan: Vec<(Fault, Peer)> = (1..=3)
        .map(|seed| (Fault::Kill9 { seed }, Peer::Smpp))
        .collect();
    // The full-disk row is the regression test of the SQLite store that stayed
    // locked after a write failed with SQLITE_FULL (`store::storage_fault`).
    plan.extend(Fault::OTHERS.map(|fault| (fault, Peer::Smpp)));
    // A crash and restart over the other two protocols: their message ids (CMPP's
    // Msg_Id, SGIP's sequence numbers) and receipts must match across the restart.
    plan.extend([Peer::Cmpp3, Peer::Sgip12].map(|peer| (Fault::Kill9 { seed: 4 }, peer)));
    let mut rows = Vec::new();
    for (fault, peer) in plan {
        let row = faults::run(fault, MESSAGES, Backend::Sqlite, peer).await;
        eprintln!("{row:?}");
        rows.push(row);
    }
    eprintln!("{}", faults::table(&rows));
    for row in &rows {
        if let Some((why, must_work)) = &row.skipped {
            if *must_work {
                common::skip(&format!("the fault row `{}`: {why}", row.fault));
            } else {
                eprintln!("NOTE: the fault row `{}` did not run: {why}", row.fault);
            }
            continue;
        }
        assert_eq!(row.lost, 0, "{}: lost", row.fault);
        assert_eq!(row.double_charged, 0, "{}: double-charged", row.fault);
        assert_eq!(row.unmarked, 0, "{}: unmarked duplicates", row.fault);
        assert!(row.reconciled && row.problems.is_empty(), "{row:?}");
    }
}
