//! The baseline store (SQLite in a temp dir, a real PostgreSQL, a writer killed mid-write)
//! and the regression detector on generated series (`baseline/simulation.rs`).

mod common;
#[path = "baseline/simulation.rs"]
mod simulation;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use plimsoll::baseline::{
    histogram, Backend, DetectorSettings, FigureSpec, PercentageComparison, Recorded,
    RegressionDetector, RegressionState, Retention, RunRecord, Store, StoreOptions,
};
use sqlx::Connection;

use common::postgres::Postgres;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

/// `minutes` before the test process started (inside the default 90-day retention, and the
/// same instant however often it is asked).
fn now_minus(minutes: i64) -> DateTime<Utc> {
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    at(*START.get_or_init(|| Utc::now().timestamp()) - 60 * minutes)
}

fn run(probe: &str, started_at: DateTime<Utc>, fingerprint: &str, p99: f64) -> RunRecord {
    RunRecord {
        probe: probe.into(),
        started_at,
        fingerprint: fingerprint.into(),
        grade: "good".into(),
        document: serde_json::json!({
            "schema": "plimsoll.result/v1",
            "probe": probe,
            "stats": { "latency_ms": { "p99": p99 } },
        }),
        figures: vec![
            ("p99".into(), p99),
            ("rps".into(), 50.0),
            ("broken".into(), f64::NAN),
        ],
        histogram: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Everything a store must do, on whichever backend.
async fn exercise(store: &Store) {
    // Two fingerprints of one probe are two series; a NaN figure is not stored.
    for i in 0..30 {
        let r = run("checkout", now_minus(60 - i), "cfg-a", 40.0 + i as f64);
        assert!(matches!(
            store.record(&r).await.unwrap(),
            Recorded::Stored { .. }
        ));
    }
    for i in 0..5 {
        let r = run("checkout", now_minus(20 - i), "cfg-b", 80.0);
        store.record(&r).await.unwrap();
    }
    // Recording the same run twice stores it once.
    let again = run("checkout", now_minus(60), "cfg-a", 40.0);
    let Recorded::Stored { run_id: first } = store.record(&again).await.unwrap() else {
        panic!("not stored")
    };
    let a = store
        .figures("checkout", "p99", "cfg-a", 1000)
        .await
        .unwrap();
    assert_eq!(a.len(), 30);
    assert_eq!(a[0].run_id, first);
    assert_eq!(a[0].value, 40.0);
    assert_eq!(a[29].value, 69.0, "oldest first");
    assert!(a.windows(2).all(|w| w[0].started_at < w[1].started_at));
    let limited = store.figures("checkout", "p99", "cfg-a", 10).await.unwrap();
    assert_eq!(limited.first().unwrap().value, 60.0, "the newest 10");
    assert_eq!(
        store
            .figures("checkout", "p99", "cfg-b", 100)
            .await
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        store.figure_names("checkout", "cfg-a").await.unwrap(),
        vec!["p99".to_string(), "rps".to_string()]
    );

    // The whole run comes back.
    let whole = store.run(first).await.unwrap().unwrap();
    assert_eq!(whole.document, again.document);
    assert_eq!(whole.summary.fingerprint, "cfg-a");
    assert_eq!(
        whole.figures,
        vec![("p99".into(), 40.0), ("rps".into(), 50.0)]
    );

    // Listing.
    let probes = store.probes().await.unwrap();
    assert_eq!(probes.len(), 1);
    assert_eq!(probes[0].runs, 35);
    assert_eq!(probes[0].last.fingerprint, "cfg-b");
    assert_eq!(store.runs("checkout", 3).await.unwrap().len(), 3);

    // The detector reads a stored series.
    let values = a.iter().map(|p| p.value);
    let state = RegressionDetector::replay(
        &DetectorSettings::default(),
        FigureSpec::of_figure("p99"),
        values,
    )
    .unwrap();
    assert_eq!(state.runs, 30);

    // Accept: the series starts again, and the latest run is the pinned baseline.
    let pinned_before = store.pinned("checkout", "cfg-a").await.unwrap().unwrap();
    assert_eq!(
        pinned_before.summary.id, first,
        "no accept yet: the oldest run"
    );
    let acc = store
        .accept("checkout", Some(now_minus(45)), "new cache")
        .await
        .unwrap();
    assert_eq!(store.acceptance("checkout").await.unwrap().unwrap(), acc);
    let after = store
        .figures("checkout", "p99", "cfg-a", 1000)
        .await
        .unwrap();
    assert_eq!(after.len(), 15, "only runs from the accept on");
    assert_eq!(after[0].value, 55.0);
    let pinned = store.pinned("checkout", "cfg-a").await.unwrap().unwrap();
    assert_eq!(Some(pinned.summary.id), acc.pinned_run);
    assert_eq!(pinned.summary.fingerprint, "cfg-b");
    let cmp = PercentageComparison::compare(FigureSpec::of_figure("p99"), 80.0, 92.0, 0.10);
    assert_eq!(cmp.state, RegressionState::Open);
    assert!((cmp.improvement_ratio + 0.15).abs() < 1e-9);

    store.ping().await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 1);
}

#[test]
fn sqlite_store_in_wal_with_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("plimsoll.db");
    runtime().block_on(async {
        let store = Store::open(path.to_str().unwrap(), StoreOptions::default())
            .await
            .unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        exercise(&store).await;
        store.close().await;
        // Reopening applies nothing twice.
        let store = Store::open(
            &format!("sqlite:{}", path.display()),
            StoreOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 1);
        assert_eq!(store.probes().await.unwrap()[0].runs, 35);
        store.close().await;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    });
}

#[test]
fn retention_keeps_the_newest_runs_and_the_pinned_one() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        retention: Retention {
            max_runs: 5,
            max_age: Duration::from_secs(3600),
        },
        ..StoreOptions::default()
    };
    runtime().block_on(async {
        let store = Store::open(dir.path().join("r.db").to_str().unwrap(), options)
            .await
            .unwrap();
        // Two hours old: past the age limit, so trimmed at once.
        store
            .record(&run("p", now_minus(120), "f", 1.0))
            .await
            .unwrap();
        assert_eq!(store.runs("p", 100).await.unwrap().len(), 0);
        store
            .record(&run("other", now_minus(50), "f", 1.0))
            .await
            .unwrap();
        for i in 0..3 {
            store
                .record(&run("p", now_minus(50 - i), "f", 2.0))
                .await
                .unwrap();
        }
        assert_eq!(store.runs("p", 100).await.unwrap().len(), 3);
        let acc = store.accept("p", None, "pin").await.unwrap();
        for i in 0..10 {
            store
                .record(&run("p", now_minus(40 - i), "f", 3.0))
                .await
                .unwrap();
        }
        let runs = store.runs("p", 100).await.unwrap();
        assert_eq!(runs.len(), 6, "five newest and the pinned run");
        assert!(runs.iter().any(|r| Some(r.id) == acc.pinned_run));
        // Retention is per probe: the other probe is trimmed only by its own records.
        assert_eq!(store.runs("other", 100).await.unwrap().len(), 1);
    });
}

#[test]
fn a_locked_store_spools_and_drains_later() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let options = StoreOptions {
        timeout: Duration::from_millis(300),
        ..StoreOptions::default()
    };
    runtime().block_on(async {
        let store = Store::open(path.to_str().unwrap(), options.clone())
            .await
            .unwrap();
        store.record(&run("p", now_minus(10), "f", 1.0)).await.unwrap();
        // Another process holds the write lock.
        let mut locker = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        sqlx::raw_sql("BEGIN IMMEDIATE; INSERT INTO accepts (probe, from_us, accepted_at_us, note) VALUES ('x', 0, 0, 'lock')")
            .execute(&mut locker)
            .await
            .unwrap();
        let t0 = std::time::Instant::now();
        for i in 0..3 {
            let r = store.record(&run("p", now_minus(9 - i), "f", 2.0)).await.unwrap();
            assert!(matches!(r, Recorded::Spooled { .. }), "{r:?}");
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "a locked store must not hold the schedule");
        assert_eq!(store.spooled(), 3);
        assert_eq!(store.drain_spool().await.ok(), None, "still locked");
        assert_eq!(store.spooled(), 3);
        sqlx::raw_sql("ROLLBACK").execute(&mut locker).await.unwrap();
        // A spool survives a restart.
        store.close().await;
        let store = Store::open(path.to_str().unwrap(), options).await.unwrap();
        assert_eq!(store.spooled(), 3);
        // The next record writes the spooled runs first.
        let r = store.record(&run("p", now_minus(1), "f", 3.0)).await.unwrap();
        assert!(matches!(r, Recorded::Stored { .. }), "{r:?}");
        assert_eq!(store.spooled(), 0);
        let values: Vec<f64> = store
            .figures("p", "p99", "f", 100)
            .await
            .unwrap()
            .iter()
            .map(|p| p.value)
            .collect();
        assert_eq!(values, vec![1.0, 2.0, 2.0, 2.0, 3.0]);
    });
}

#[test]
fn histograms_are_stored_and_merged() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let store = Store::open(
            dir.path().join("h.db").to_str().unwrap(),
            StoreOptions::default(),
        )
        .await
        .unwrap();
        for i in 0..3 {
            let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            for v in 1..=100u64 {
                h.record(v * 1000 * (i + 1)).unwrap();
            }
            let mut r = run("p", now_minus(10 - i as i64), "f", 1.0);
            r.histogram = Some(histogram::encode(&h).unwrap());
            store.record(&r).await.unwrap();
        }
        let stored = store.histograms("p", "f", 10).await.unwrap();
        let merged = histogram::merge(stored.iter().map(|b| b.as_slice()))
            .unwrap()
            .unwrap();
        assert_eq!(merged.len(), 300);
        assert!(merged.max() >= 300_000);
    });
}

#[test]
fn postgres_store() {
    let pg = Postgres::start();
    let spool = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        spool_dir: Some(spool.path().to_path_buf()),
        ..StoreOptions::default()
    };
    runtime().block_on(async {
        let store = Store::open(&pg.url, options.clone()).await.unwrap();
        assert_eq!(store.backend(), Backend::Postgres);
        exercise(&store).await;
        store.close().await;
        let store = Store::open(&pg.url, options).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 1);
        assert_eq!(store.probes().await.unwrap()[0].runs, 35);
    });
}

/// Not a test on its own: the child of `a_writer_killed_mid_write_loses_no_completed_run`,
/// which runs this binary with `PLIMSOLL_BASELINE_CRASH_DB` set. Writes runs with large
/// documents as fast as it can and prints each run the store acknowledged.
#[test]
fn crash_writer() {
    let Ok(path) = std::env::var("PLIMSOLL_BASELINE_CRASH_DB") else {
        return;
    };
    let options = StoreOptions {
        retention: Retention {
            max_runs: 1_000_000,
            max_age: Duration::from_secs(3600 * 24 * 365 * 100),
        },
        ..StoreOptions::default()
    };
    let base: i64 = std::env::var("PLIMSOLL_BASELINE_CRASH_BASE")
        .unwrap()
        .parse()
        .unwrap();
    runtime().block_on(async {
        let store = Store::open(&path, options).await.unwrap();
        let filler = "x".repeat(256 * 1024);
        for i in base.. {
            let mut r = run("crash", at(1_800_000_000 + i), "f", i as f64);
            r.document["filler"] = serde_json::Value::String(filler.clone());
            match store.record(&r).await.unwrap() {
                Recorded::Stored { .. } => println!("stored {i}"),
                Recorded::Spooled { .. } => println!("spooled {i}"),
            }
        }
    });
}

#[test]
fn a_writer_killed_mid_write_loses_no_completed_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let mut rng = fastrand::Rng::with_seed(13);
    let mut acknowledged = Vec::new();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash_writer", "--exact", "--nocapture", "--test-threads=1"])
            .env("PLIMSOLL_BASELINE_CRASH_DB", &path)
            .env(
                "PLIMSOLL_BASELINE_CRASH_BASE",
                (round * 1_000_000).to_string(),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let target = 10 + rng.usize(..20);
        let mut seen = 0;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(i) = line.strip_prefix("stored ") {
                acknowledged.push(i.parse::<i64>().unwrap());
                seen += 1;
                if seen >= target {
                    break;
                }
            }
        }
        // Land somewhere inside the next write.
        std::thread::sleep(Duration::from_micros(rng.u64(0..20_000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Lines printed before the kill are acknowledged runs too.
        for line in lines.map_while(Result::ok) {
            if let Some(i) = line.strip_prefix("stored ") {
                acknowledged.push(i.parse().unwrap());
            }
        }
        assert!(seen >= target, "round {round}: the writer stopped early");
    }
    runtime().block_on(async {
        let store = Store::open(path.to_str().unwrap(), StoreOptions::default())
            .await
            .unwrap();
        let stored: std::collections::BTreeSet<i64> = store
            .figures("crash", "p99", "f", 1_000_000)
            .await
            .unwrap()
            .iter()
            .map(|p| p.value as i64)
            .collect();
        for i in &acknowledged {
            assert!(stored.contains(i), "acknowledged run {i} is missing");
        }
        store.close().await;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(check, "ok");
        println!(
            "{} acknowledged runs over 3 kills, {} stored",
            acknowledged.len(),
            stored.len()
        );
    });
}
