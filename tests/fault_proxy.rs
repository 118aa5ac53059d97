//! The fault proxy and the fault actions over real sockets on 127.0.0.1: each toxic's effect
//! measured, switches while a connection is open, a real Redis behind the proxy, the clear of
//! a fault in every ending, and `plimsoll proxy --config` end to end.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plimsoll::fault::{
    ActionOutcome, ClearReason, CommandAction, Direction, Fault, FaultAction, FaultGuard,
    FaultProxy, HttpAction, ListenerSpec, ProxyHandle, Toxic, ToxicKind,
};

/// A proxy on its own runtime, so the tests drive it with plain blocking sockets.
struct TestProxy {
    rt: tokio::runtime::Runtime,
    proxy: Option<FaultProxy>,
    handle: ProxyHandle,
}

impl TestProxy {
    fn start(upstream: u16, toxics: Vec<Toxic>) -> TestProxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut spec = ListenerSpec::new(
            "up",
            "127.0.0.1:0".parse().unwrap(),
            format!("127.0.0.1:{upstream}"),
        );
        spec.toxics = toxics;
        let proxy = rt.block_on(FaultProxy::start(vec![spec])).unwrap();
        let handle = proxy.handle();
        TestProxy {
            rt,
            proxy: Some(proxy),
            handle,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.handle.local_addr("up").unwrap()
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    fn set(&self, toxics: Vec<Toxic>) {
        self.handle.set_toxics("up", toxics).unwrap();
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(p) = self.proxy.take() {
            self.rt.block_on(p.shutdown(Duration::ZERO));
        }
    }
}

/// An echo server: every connection gets back what it sends.
fn echo_server() -> u16 {
    common::raw_server(|mut s| {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// A server that sends `n` bytes to every connection, then closes it.
fn push_server(n: usize) -> u16 {
    common::raw_server(move |mut s| {
        let _ = s.write_all(&vec![b'x'; n]);
    })
}

/// One echo round trip of `msg`; the time it took.
fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Duration {
    let t0 = Instant::now();
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
    t0.elapsed()
}

/// Reads until EOF or an error; bytes read and how it ended.
fn read_to_end(s: &mut TcpStream) -> (usize, std::io::Result<()>) {
    let mut total = 0;
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (total, Ok(())),
            Ok(n) => total += n,
            Err(e) => return (total, Err(e)),
        }
    }
}

fn latency(ms: u64, direction: Direction) -> Toxic {
    Toxic::new(
        ToxicKind::Latency {
            latency: Duration::from_millis(ms),
            jitter: Duration::ZERO,
        },
        direction,
    )
}

#[test]
fn with_no_toxic_it_is_a_plain_copy() {
    let p = TestProxy::start(echo_server(), vec![]);
    let mut s = p.connect();
    round_trip(&mut s, b"hello");
    // A megabyte each way, intact, with the writer and the reader on different threads.
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || w.write_all(&sent).unwrap());
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got).unwrap();
    writer.join().unwrap();
    assert!(got == data);
    let c = p.handle.counts("up").unwrap();
    assert_eq!(c.accepted, 1);
    assert_eq!(c.bytes_upstream, 1_000_005);
    assert_eq!(c.bytes_downstream, 1_000_005);
}

#[test]
fn down_refuses_new_connections_and_closes_open_ones_until_cleared() {
    let p = TestProxy::start(echo_server(), vec![]);
    let mut open = p.connect();
    round_trip(&mut open, b"ping");
    p.set(vec![Toxic::down()]);
    let (_, end) = read_to_end(&mut open);
    assert!(end.is_ok() || end.unwrap_err().kind() == ErrorKind::ConnectionReset);
    // The listening socket is closed: a refusal, as from a stopped server.
    std::thread::sleep(Duration::from_millis(50));
    let err = TcpStream::connect(p.addr()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    p.handle.clear("up").unwrap();
    let t0 = Instant::now();
    let mut again = loop {
        match TcpStream::connect(p.addr()) {
            Ok(s) => break s,
            Err(_) if t0.elapsed() < Duration::from_secs(2) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("still refused after the clear: {e}"),
        }
    };
    again
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    round_trip(&mut again, b"back");
}

#[test]
fn blackhole_accepts_and_forwards_nothing_until_cleared() {
    let p = TestProxy::start(echo_server(), vec![]);
    p.set(vec![Toxic::new(ToxicKind::Blackhole, Direction::Both)]);
    let mut s = p.connect();
    s.write_all(b"lost").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 16];
    let err = s.read(&mut buf).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    assert_eq!(p.handle.counts("up").unwrap().bytes_upstream, 0);
    // Same connection, toxic gone: traffic flows again.
    p.handle.clear("up").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    round_trip(&mut s, b"found");
}

#[test]
fn latency_adds_its_delay_per_direction_and_switches_on_an_open_connection() {
    let p = TestProxy::start(echo_server(), vec![]);
    let mut s = p.connect();
    let base = (0..5).map(|_| round_trip(&mut s, b"x")).min().unwrap();
    assert!(base < Duration::from_millis(20), "{base:?}");

    p.set(vec![latency(100, Direction::Downstream)]);
    std::thread::sleep(Duration::from_millis(20));
    for _ in 0..3 {
        let d = round_trip(&mut s, b"y");
        assert!(
            d >= Duration::from_millis(100) && d < Duration::from_millis(160),
            "{d:?}"
        );
    }
    p.set(vec![latency(100, Direction::Both)]);
    std::thread::sleep(Duration::from_millis(20));
    let d = round_trip(&mut s, b"z");
    assert!(
        d >= Duration::from_millis(200) && d < Duration::from_millis(270),
        "{d:?}"
    );

    p.handle.clear("up").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let d = round_trip(&mut s, b"w");
    assert!(d < Duration::from_millis(30), "{d:?}");
}

#[test]
fn latency_keeps_the_stream_in_order_under_jitter() {
    let p = TestProxy::start(echo_server(), vec![]);
    p.set(vec![Toxic::new(
        ToxicKind::Latency {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(15),
        },
        Direction::Both,
    )]);
    let mut s = p.connect();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..200u32 {
            w.write_all(&i.to_be_bytes()).unwrap();
            std::thread::sleep(Duration::from_micros(300));
        }
    });
    for i in 0..200u32 {
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        assert_eq!(u32::from_be_bytes(b), i);
    }
    writer.join().unwrap();
}

#[test]
fn bandwidth_limits_the_rate() {
    let p = TestProxy::start(push_server(50_000), vec![]);
    p.set(vec![Toxic::new(
        ToxicKind::Bandwidth {
            bytes_per_second: 100_000,
        },
        Direction::Downstream,
    )]);
    let mut s = p.connect();
    let t0 = Instant::now();
    let (n, end) = read_to_end(&mut s);
    let took = t0.elapsed();
    end.unwrap();
    assert_eq!(n, 50_000);
    // 50 kB at 100 kB/s: half a second.
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(800),
        "{took:?}"
    );
}

#[test]
fn slow_close_holds_the_close_back() {
    let p = TestProxy::start(push_server(10), vec![]);
    p.set(vec![Toxic::new(
        ToxicKind::SlowClose {
            delay: Duration::from_millis(400),
        },
        Direction::Downstream,
    )]);
    let mut s = p.connect();
    let t0 = Instant::now();
    let mut b = [0u8; 10];
    s.read_exact(&mut b).unwrap();
    assert!(t0.elapsed() < Duration::from_millis(100));
    let (n, end) = read_to_end(&mut s);
    end.unwrap();
    assert_eq!(n, 0);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(600),
        "{took:?}"
    );
}

#[test]
fn reset_peer_resets_the_connection() {
    let p = TestProxy::start(echo_server(), vec![]);
    let mut s = p.connect();
    round_trip(&mut s, b"before");
    p.set(vec![Toxic::new(
        ToxicKind::ResetPeer {
            after: Duration::from_millis(200),
        },
        Direction::Downstream,
    )]);
    // Works until the reset…
    std::thread::sleep(Duration::from_millis(20));
    round_trip(&mut s, b"still");
    let t0 = Instant::now();
    let mut buf = [0u8; 8];
    let err = s.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    let at = t0.elapsed();
    assert!(
        at >= Duration::from_millis(150) && at < Duration::from_millis(400),
        "{at:?}"
    );
    // …and a new connection is reset at once.
    p.set(vec![Toxic::new(
        ToxicKind::ResetPeer {
            after: Duration::ZERO,
        },
        Direction::Downstream,
    )]);
    let mut s = p.connect();
    let _ = s.write_all(b"x");
    let err = s.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}

#[test]
fn limit_data_closes_after_its_bytes() {
    let p = TestProxy::start(push_server(5_000), vec![]);
    p.set(vec![Toxic::new(
        ToxicKind::LimitData { bytes: 1_000 },
        Direction::Downstream,
    )]);
    let mut s = p.connect();
    let (n, _) = read_to_end(&mut s);
    assert_eq!(n, 1_000);
}

/// How many of `n` fresh connections get an echo under a blackhole of this toxicity. All
/// connections ask first, then all are read once the echoes have had time to come.
fn echoed(p: &TestProxy, n: usize) -> usize {
    let mut conns: Vec<TcpStream> = (0..n).map(|_| p.connect()).collect();
    for s in &mut conns {
        s.write_all(b"?").unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    conns
        .iter_mut()
        .map(|s| {
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 1];
            matches!(s.read(&mut b), Ok(1))
        })
        .filter(|echoed| *echoed)
        .count()
}

#[test]
fn toxicity_is_the_share_of_connections_affected() {
    let p = TestProxy::start(echo_server(), vec![]);
    let hole = Toxic::new(ToxicKind::Blackhole, Direction::Both);
    p.set(vec![hole.clone().with_toxicity(0.0)]);
    assert_eq!(echoed(&p, 20), 20);
    p.set(vec![hole.clone().with_toxicity(1.0)]);
    assert_eq!(echoed(&p, 10), 0);
    p.set(vec![hole.with_toxicity(0.5)]);
    let n = echoed(&p, 80);
    // Binomial(80, 0.5): 40 ± 4 s.d.; 22..=58 is beyond 4 s.d. either way.
    assert!((22..=58).contains(&n), "{n} of 80 echoed");
}

#[test]
fn redis_through_the_proxy_down_and_back() {
    let redis = common::redis::Redis::start();
    let p = TestProxy::start(redis.port, vec![]);
    let ask = |cmd: &[u8]| -> std::io::Result<String> {
        let mut s = TcpStream::connect(p.addr())?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(cmd)?;
        let mut b = [0u8; 64];
        let n = s.read(&mut b)?;
        Ok(String::from_utf8_lossy(&b[..n]).into_owned())
    };
    assert_eq!(ask(b"PING\r\n").unwrap(), "+PONG\r\n");
    p.set(vec![Toxic::down()]);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        ask(b"PING\r\n").unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    p.set(vec![latency(150, Direction::Downstream)]);
    let t0 = Instant::now();
    let mut pong = ask(b"PING\r\n");
    while pong.is_err() && t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
        pong = ask(b"PING\r\n");
    }
    assert_eq!(pong.unwrap(), "+PONG\r\n");
    assert!(t0.elapsed() >= Duration::from_millis(150));
    p.handle.clear("up").unwrap();
    assert_eq!(ask(b"PING\r\n").unwrap(), "+PONG\r\n");
}

#[test]
fn shutdown_closes_open_connections_within_the_grace_period_plus_one_second() {
    let mut p = TestProxy::start(echo_server(), vec![]);
    let mut conns: Vec<TcpStream> = (0..5).map(|_| p.connect()).collect();
    for c in &mut conns {
        round_trip(c, b"hi");
    }
    let proxy = p.proxy.take().unwrap();
    let t0 = Instant::now();
    let report = p.rt.block_on(proxy.shutdown(Duration::from_millis(300)));
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(1300), "{took:?}");
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert_eq!(report.closed_connections, 5);
    assert!(report.clean);
    for c in &mut conns {
        let (_, end) = read_to_end(c);
        assert!(end.is_ok() || end.unwrap_err().kind() == ErrorKind::ConnectionReset);
    }
    assert!(TcpStream::connect(p.addr()).is_err());
}

// ---- fault actions and the guard ----

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A fault whose inject and clear write marker lines into `file`.
fn marker_fault(file: &std::path::Path, inject_script: &str, timeout: Duration) -> Fault {
    let mut inject = CommandAction::new([inject_script.to_string()], timeout);
    inject.shell = true;
    inject
        .env
        .push(("MARKER".into(), file.display().to_string()));
    let mut clear = CommandAction::new(
        ["sh", "-c", "echo cleared >> \"$MARKER\""],
        Duration::from_secs(5),
    );
    clear
        .env
        .push(("MARKER".into(), file.display().to_string()));
    Fault::Action {
        inject: FaultAction::Command(inject),
        clear: Some(FaultAction::Command(clear)),
    }
}

fn marker(file: &std::path::Path) -> String {
    std::fs::read_to_string(file).unwrap_or_default()
}

#[test]
fn a_fault_held_to_its_end_is_cleared_and_both_actions_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m");
    let stop = AtomicBool::new(false);
    let record = rt().block_on(async {
        let g = FaultGuard::inject(
            "f",
            marker_fault(&f, "echo injected >> \"$MARKER\"", Duration::from_secs(5)),
            Some(&stop),
        )
        .await;
        assert!(g.injected());
        g.hold(Duration::from_millis(50), &stop).await;
        g.clear(ClearReason::Ended, None).await
    });
    assert_eq!(marker(&f), "injected\ncleared\n");
    assert_eq!(record.clear_reason, Some(ClearReason::Ended));
    let (i, c) = (record.inject.unwrap(), record.clear.unwrap());
    assert!(i.ok && c.ok);
    assert!(c.started >= i.ended + Duration::from_millis(50));
    assert_eq!(
        i.action,
        "command sh -c \"echo injected >> \\\"$MARKER\\\"\""
    );
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["outcome"], "exited");
    assert_eq!(json["code"], 0);
}

#[test]
fn an_inject_past_its_timeout_is_killed_and_cleared_anyway() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m");
    let t0 = Instant::now();
    let record = rt().block_on(async {
        let g = FaultGuard::inject(
            "f",
            marker_fault(&f, "sleep 30", Duration::from_millis(200)),
            None,
        )
        .await;
        assert!(!g.injected());
        g.clear(ClearReason::Failed, None).await
    });
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(record.inject.unwrap().outcome, ActionOutcome::TimedOut);
    assert_eq!(record.clear_reason, Some(ClearReason::Failed));
    assert_eq!(marker(&f), "cleared\n");
}

#[test]
fn a_failed_inject_is_still_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m");
    let record = rt().block_on(async {
        let g = FaultGuard::inject(
            "f",
            marker_fault(&f, "exit 7", Duration::from_secs(5)),
            None,
        )
        .await;
        g.clear(ClearReason::Failed, None).await
    });
    assert_eq!(
        record.inject.unwrap().outcome,
        ActionOutcome::Exited {
            code: Some(7),
            signal: None
        }
    );
    assert!(record.clear.unwrap().ok);
    assert_eq!(marker(&f), "cleared\n");
}

#[test]
fn a_dropped_guard_clears_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m");
    let log = rt().block_on(async {
        let g =
            FaultGuard::inject("f", marker_fault(&f, "true", Duration::from_secs(5)), None).await;
        g.log()
        // g dropped here, without a clear: an early return or an unwinding run.
    });
    assert_eq!(marker(&f), "cleared\n");
    let r = log.snapshot();
    assert_eq!(r.clear_reason, Some(ClearReason::Dropped));
    assert!(r.clear.unwrap().ok);
}

#[test]
fn a_run_cancelled_by_its_timeout_clears_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m");
    let log = Arc::new(std::sync::Mutex::new(None));
    let l2 = log.clone();
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let timed_out = rt().block_on(async {
        let run = async {
            let g = FaultGuard::inject("f", marker_fault(&f, "true", Duration::from_secs(5)), None)
                .await;
            *l2.lock().unwrap() = Some(g.log());
            g.hold(Duration::from_secs(30), &stop).await;
            g.clear(ClearReason::Ended, None).await
        };
        tokio::time::timeout(Duration::from_millis(200), run)
            .await
            .is_err()
    });
    assert!(timed_out);
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(marker(&f), "cleared\n");
    let r = log.lock().unwrap().as_ref().unwrap().snapshot();
    assert_eq!(r.clear_reason, Some(ClearReason::Dropped));
}

#[test]
fn a_stop_mid_fault_clears_within_the_grace_period_plus_one_second() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m");
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        s2.store(true, Ordering::Relaxed);
    });
    let grace = Duration::from_millis(500);
    let t0 = Instant::now();
    let record = rt().block_on(async {
        let g = FaultGuard::inject(
            "f",
            marker_fault(&f, "true", Duration::from_secs(5)),
            Some(&stop),
        )
        .await;
        let end = g.hold(Duration::from_secs(30), &stop).await;
        assert_eq!(end, plimsoll::fault::HoldEnd::Stopped);
        g.clear(ClearReason::Stopped, Some(Instant::now() + grace))
            .await
    });
    assert!(t0.elapsed() < Duration::from_millis(150) + grace + Duration::from_secs(1));
    assert_eq!(record.clear_reason, Some(ClearReason::Stopped));
    assert_eq!(marker(&f), "cleared\n");

    // A stop during the inject ends the inject at once; a clear slower than the grace
    // period is ended at the deadline, and that is recorded.
    let stop = AtomicBool::new(true);
    let mut slow_clear = CommandAction::new(["sleep", "30"], Duration::from_secs(60));
    slow_clear.shell = false;
    let t0 = Instant::now();
    let record = rt().block_on(async {
        let g = FaultGuard::inject(
            "f",
            Fault::Action {
                inject: FaultAction::Command(CommandAction::new(
                    ["sleep", "30"],
                    Duration::from_secs(60),
                )),
                clear: Some(FaultAction::Command(slow_clear)),
            },
            Some(&stop),
        )
        .await;
        g.clear(ClearReason::Stopped, Some(Instant::now() + grace))
            .await
    });
    assert!(
        t0.elapsed() < grace + Duration::from_secs(1),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(record.inject.unwrap().outcome, ActionOutcome::Stopped);
    assert_eq!(record.clear.unwrap().outcome, ActionOutcome::TimedOut);
}

#[test]
fn a_toxic_fault_restores_the_listener_when_cleared_or_dropped() {
    let p = TestProxy::start(echo_server(), vec![latency(5, Direction::Upstream)]);
    let before = p.handle.toxics("up").unwrap();
    let fault = Fault::Toxics {
        proxy: p.handle.clone(),
        listener: "up".into(),
        toxics: vec![Toxic::down()],
    };
    let record = p.rt.block_on(async {
        let g = FaultGuard::inject("redis-down", fault.clone(), None).await;
        assert_eq!(p.handle.toxics("up").unwrap(), vec![Toxic::down()]);
        g.clear(ClearReason::Ended, None).await
    });
    assert_eq!(p.handle.toxics("up").unwrap(), before);
    assert_eq!(record.inject.unwrap().action, "toxics up: down");
    assert!(record
        .clear
        .unwrap()
        .action
        .starts_with("toxics up: latency(upstream"));
    let log =
        p.rt.block_on(async { FaultGuard::inject("again", fault, None).await.log() });
    assert_eq!(p.handle.toxics("up").unwrap(), before);
    assert_eq!(log.snapshot().clear_reason, Some(ClearReason::Dropped));
}

#[test]
fn http_actions_record_the_status() {
    let ok = common::canned_server(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n");
    let missing = common::canned_server(b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nnope");
    let action = |port: u16| HttpAction {
        method: http::Method::POST,
        url: format!("http://127.0.0.1:{port}/proxies/redis/toxics?x=1"),
        headers: vec![("authorization".into(), "Bearer t".into())],
        body: bytes::Bytes::from_static(b"{\"enabled\":false}"),
        timeout: Duration::from_secs(5),
        expect_status: vec![],
    };
    let rt = rt();
    let r = rt.block_on(FaultAction::Http(action(ok)).run(None, None));
    assert_eq!(r.outcome, ActionOutcome::Answered { status: 204 });
    assert!(r.ok);
    assert_eq!(
        r.action,
        format!("http POST http://127.0.0.1:{ok}/proxies/redis/toxics")
    );
    let r = rt.block_on(FaultAction::Http(action(missing)).run(None, None));
    assert_eq!(r.outcome, ActionOutcome::Answered { status: 404 });
    assert!(!r.ok);
    assert_eq!(r.output, "nope");
    let r = rt.block_on(FaultAction::Http(action(common::closed_port())).run(None, None));
    assert!(matches!(r.outcome, ActionOutcome::Failed { .. }), "{r:?}");
    // A server that never answers: the timeout ends the call.
    let silent = common::raw_server(common::drain);
    let mut slow = action(silent);
    slow.timeout = Duration::from_millis(200);
    let r = rt.block_on(FaultAction::Http(slow).run(None, None));
    assert_eq!(r.outcome, ActionOutcome::TimedOut);
}

// ---- plimsoll proxy --config ----

#[test]
fn plimsoll_proxy_forwards_until_sigterm() {
    use std::io::BufRead;
    let echo = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    std::fs::write(
        &cfg,
        format!(
            "grace_period = \"300ms\"\n\
             [[listener]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:{echo}\"\n\
             [[listener.toxic]]\nkind = \"latency\"\nlatency = \"50ms\"\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .args(["proxy", "--config"])
        .arg(&cfg)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .to_string();
    assert!(
        line.contains(&format!("forwarding to 127.0.0.1:{echo}")),
        "{line}"
    );
    assert!(
        line.contains("toxics: latency(downstream 50ms±0ns)"),
        "{line}"
    );
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let d = round_trip(&mut s, b"through the binary");
    assert!(d >= Duration::from_millis(50), "{d:?}");

    let t0 = Instant::now();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    // The open connection held on through the grace period, then was closed.
    assert!(t0.elapsed() < Duration::from_millis(300) + Duration::from_secs(1));
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("stopped (1 connection(s) closed"), "{rest}");
}

#[test]
fn plimsoll_proxy_reports_bad_files_and_busy_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[[listener]]\nname = \"x\"\nlisten = \"127.0.0.1:0\"\nupstream = \"nowhere\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .args(["proxy", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listener[0].upstream: \"nowhere\" is not HOST:PORT"),
        "{err}"
    );

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    std::fs::write(
        &cfg,
        format!("[[listener]]\nname = \"x\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"127.0.0.1:1\"\n"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .args(["proxy", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("listener x: cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}
