//! End-to-end throughput over loopback: client(s) → simulator → receipts back.
//!
//! `cargo run --release -p tongdao-smpp --example throughput -- [N] [WINDOW] [BINDS]`
//! (defaults 100000, 50, 1). Prints submits/s (until the last `submit_sm_resp`) and
//! receipts/s (until the last receipt is acknowledged), then one summary line:
//! `smpp: submits=… window=… binds=… submit_per_s=… dlr_per_s=…`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tongdao_smpp::encode::{Concat, encode};
use tongdao_smpp::sim::{Sim, SimConfig};
use tongdao_smpp::{Client, ClientConfig, Inbound, SubmitRequest};

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = arg(1, 100_000);
    let window = arg(2, 50);
    let binds = arg(3, 1).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(n, window, binds))
}

async fn run(n: usize, window: usize, binds: usize) -> Result<(), Box<dyn std::error::Error>> {
    let sim = Sim::start(SimConfig {
        dlr_delay: Duration::from_millis(1),
        dlr_window: 200,
        ..SimConfig::default()
    })
    .await?;
    let receipts = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..binds {
        let mut cfg = ClientConfig::new(sim.local_addr().to_string(), "bench", "bench");
        cfg.window = window;
        let (client, mut rx) = Client::connect(cfg).await?;
        let receipts = receipts.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                match ev {
                    Inbound::Receipt(_, ack) => {
                        ack.ack();
                        receipts.fetch_add(1, Ordering::Relaxed);
                    }
                    Inbound::Mo(_, ack) => ack.ack(),
                    Inbound::Closed(_) => break,
                }
            }
        });
        clients.push(client);
    }
    let segment = encode("Your verification code is 123456", Concat::Udh8(0))?.remove(0);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..window * binds {
        let client = clients[w % binds].clone();
        let next = next.clone();
        let segment = segment.clone();
        workers.spawn(async move {
            let mut failed = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return failed;
                }
                let req = SubmitRequest::new("10661234", &format!("86138{i:08}"), &segment);
                if client.submit(&req).await.is_err() {
                    failed += 1;
                }
            }
        });
    }
    let mut failed = 0;
    while let Some(res) = workers.join_next().await {
        failed += res?;
    }
    let submit_secs = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(20);
    while receipts.load(Ordering::Relaxed) < n - failed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let dlr_secs = started.elapsed().as_secs_f64();
    let got = receipts.load(Ordering::Relaxed);
    if got < n - failed {
        eprintln!("receipts missing; simulator: {:?}", sim.stats());
    }
    let submit_rate = n as f64 / submit_secs;
    let dlr_rate = got as f64 / dlr_secs;
    println!("submits: {n} in {submit_secs:.2}s = {submit_rate:.0}/s ({failed} failed)");
    println!("receipts: {got} acknowledged after {dlr_secs:.2}s = {dlr_rate:.0}/s end to end");
    println!(
        "smpp: submits={n} window={window} binds={binds} submit_per_s={submit_rate:.0} dlr_per_s={dlr_rate:.0}"
    );
    Ok(())
}
