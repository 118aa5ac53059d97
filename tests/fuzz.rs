//! Seeded property tests (a hand-rolled generator on `fastrand`; no nightly toolchain here)
//! over the three places that read untrusted input: the HTTP/1.1 response parser, the
//! configuration loader and the template engine. On every input: no panic, no hang (each case
//! is timed), no unbounded allocation (a counting allocator measures each case's peak).
//!
//! Each target runs a fixed number of cases or until its time budget is spent, and prints how
//! many it ran. `PLIMSOLL_FUZZ_SEED=N` replays another seed; a failure prints the seed and
//! the input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

// ---------------------------------------------------------------------------------------------
// Allocation accounting: the live bytes of the process and their peak since the last reset.

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            if new >= l.size() {
                let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The targets share the process-wide counters, so they take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `f`, returning whether it panicked, how long it took and how many bytes it allocated
/// at its peak above what was live when it started.
fn measured(f: impl FnOnce()) -> (bool, Duration, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let start = Instant::now();
    let panicked = std::panic::catch_unwind(AssertUnwindSafe(f)).is_err();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    (panicked, start.elapsed(), peak)
}

fn seed() -> u64 {
    std::env::var("PLIMSOLL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026)
}

/// Runs cases until `max_cases` or `budget` is reached; every case must finish within
/// `case_limit` and allocate at most `alloc_limit` bytes above its start. Returns the count.
fn fuzz<'r>(
    target: &str,
    max_cases: u64,
    budget: Duration,
    case_limit: Duration,
    alloc_limit: usize,
    mut case: impl FnMut(&mut fastrand::Rng) -> (String, Box<dyn FnOnce() + 'r>),
) -> u64 {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // A panic is a finding, reported below with its input; the default hook's output for
    // each would drown it.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = Instant::now();
    let mut n = 0;
    let mut failure = None;
    while n < max_cases && start.elapsed() < budget {
        let (input, run) = case(&mut rng);
        let (panicked, took, peak) = measured(run);
        n += 1;
        let why = if panicked {
            Some("panicked".to_string())
        } else if took > case_limit {
            Some(format!("took {took:?} (a hang)"))
        } else if peak > alloc_limit {
            Some(format!("allocated {peak} bytes"))
        } else {
            None
        };
        if let Some(why) = why {
            failure = Some(format!(
                "{target}: case {n} (seed {seed}) {why} on input:\n{input}"
            ));
            break;
        }
    }
    std::panic::set_hook(hook);
    if let Some(f) = failure {
        panic!("{f}");
    }
    eprintln!(
        "{target}: {n} cases in {:?}, no panic, no hang, bounded allocation",
        start.elapsed()
    );
    n
}

fn pick<'a, T>(rng: &mut fastrand::Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(..items.len())]
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 response parser.

/// A server's bytes, handed out in reads of random sizes, then end of stream.
struct Scripted {
    input: Vec<u8>,
    pos: usize,
    pieces: Vec<usize>,
    next: usize,
}

impl AsyncRead for Scripted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let piece = self.pieces[self.next % self.pieces.len()];
        self.next += 1;
        let n = piece.min(self.input.len() - self.pos).min(buf.remaining());
        let from = self.pos;
        buf.put_slice(&self.input[from..from + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A response built from the grammar's pieces, some of them hostile, then mutated.
fn h1_response(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let interim = rng.u8(..8) == 0;
    if interim {
        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let status = *pick(
        rng,
        &[
            "200", "204", "304", "101", "404", "500", "999", "20", "abc", "-1", "1000", "103",
        ],
    );
    let version = *pick(
        rng,
        &[
            "HTTP/1.1",
            "HTTP/1.0",
            "HTTP/2",
            "HTTP/1.1 ",
            "http/1.1",
            "",
        ],
    );
    out.extend_from_slice(format!("{version} {status} OK\r\n").as_bytes());
    let body_len = rng.usize(..2048);
    let mut chunked = false;
    for _ in 0..rng.usize(..8) {
        let h = match rng.u8(..10) {
            0 => format!("Content-Length: {body_len}"),
            1 => format!(
                "Content-Length: {}",
                pick(
                    rng,
                    &[
                        "18446744073709551615",
                        "99999999999999999999999",
                        "-5",
                        "1, 2",
                        " ",
                        "0x10",
                        "1e3"
                    ]
                )
            ),
            2 => {
                chunked = true;
                "Transfer-Encoding: chunked".to_string()
            }
            3 => "Transfer-Encoding: gzip, chunked".to_string(),
            4 => "Connection: close".to_string(),
            5 => "Connection: keep-alive".to_string(),
            6 => format!("X-Long: {}", "a".repeat(rng.usize(..70_000))),
            7 => "Bad Header Without Colon".to_string(),
            8 => "\u{1}: \u{7f}".to_string(),
            _ => format!("X-{}: {}", rng.u32(..), rng.u64(..)),
        };
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(if rng.u8(..20) == 0 { b"\n" } else { b"\r\n" });
    }
    out.extend_from_slice(b"\r\n");
    if chunked {
        for _ in 0..rng.usize(..6) {
            let size = rng.usize(..600);
            let line = match rng.u8(..8) {
                0 => "ffffffffffffffffffff".to_string(),
                1 => format!("{size:x};ext=\"{}\"", "e".repeat(rng.usize(..5000))),
                2 => "zz".to_string(),
                3 => String::new(),
                _ => format!("{size:x}"),
            };
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend(std::iter::repeat_n(b'x', size));
            out.extend_from_slice(b"\r\n");
        }
        if rng.bool() {
            out.extend_from_slice(b"0\r\n");
            for _ in 0..rng.usize(..3) {
                out.extend_from_slice(format!("T-{}: v\r\n", rng.u16(..)).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
    } else {
        out.extend(std::iter::repeat_n(b'b', body_len + rng.usize(..4)));
    }
    // Mutations: flipped bytes, cuts, repeats, raw garbage.
    for _ in 0..rng.usize(..4) {
        if out.is_empty() {
            break;
        }
        let i = rng.usize(..out.len());
        match rng.u8(..4) {
            0 => out[i] = rng.u8(..),
            1 => out.truncate(i),
            2 => {
                let end = (i + rng.usize(..64)).min(out.len());
                let piece = out[i..end].to_vec();
                out.splice(i..i, piece);
            }
            _ => {
                let garbage: Vec<u8> = (0..rng.usize(..32)).map(|_| rng.u8(..)).collect();
                out.splice(i..i, garbage);
            }
        }
    }
    if rng.u8(..16) == 0 {
        out = (0..rng.usize(..4096)).map(|_| rng.u8(..)).collect();
    }
    out
}

#[test]
fn h1_response_parser_survives_any_bytes() {
    use plimsoll::engine::h1::H1Conn;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let n = fuzz(
        "h1 response parser",
        200_000,
        Duration::from_secs(15),
        Duration::from_secs(1),
        // The connection's buffer (at most 64 KiB of head), the kept body (bounded by
        // max_body below) and the input itself: a few MiB at most.
        4 << 20,
        |rng| {
            let input = h1_response(rng);
            let shown = String::from_utf8_lossy(&input[..input.len().min(2000)]).into_owned();
            let pieces: Vec<usize> = (0..rng.usize(1..6)).map(|_| rng.usize(1..9000)).collect();
            let head = rng.u8(..8) == 0;
            let keep = rng.bool();
            let max_body = *pick(rng, &[0u64, 1, 100, 1024, 1 << 20]);
            let rt = &rt;
            (
                shown,
                Box::new(move || {
                    let mut conn = H1Conn::new(Scripted {
                        input,
                        pos: 0,
                        pieces,
                        next: 0,
                    });
                    let mut kept = Vec::new();
                    let mut head_out = Vec::new();
                    let r = rt.block_on(conn.exchange_into(
                        b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
                        head,
                        max_body,
                        keep.then_some(&mut kept),
                        Some(&mut head_out),
                    ));
                    if let Ok(resp) = r {
                        assert!(resp.body_bytes <= max_body, "{resp:?} over {max_body}");
                        assert!(kept.len() as u64 <= max_body);
                        assert!((100..=999).contains(&resp.status), "{resp:?}");
                    }
                    assert!(head_out.len() <= 64 * 1024);
                }),
            )
        },
    );
    assert!(n > 1000, "only {n} cases");
}

// ---------------------------------------------------------------------------------------------
// Configuration loader.

/// Valid configurations to mutate: the shipped ones.
fn seeds() -> Vec<String> {
    let mut out = vec![std::fs::read_to_string("config/reference.toml").unwrap()];
    for e in std::fs::read_dir("config/examples").unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            out.push(std::fs::read_to_string(p).unwrap());
        }
    }
    out
}

/// Values that probe bounds, types and parsers.
const HOSTILE: &[&str] = &[
    "nan",
    "inf",
    "-inf",
    "1e308",
    "-1",
    "0",
    "4294967296",
    "18446744073709551615",
    "9223372036854775807",
    "-9223372036854775808",
    "1e12",
    "0.0",
    "true",
    "\"\"",
    "\"99999999999999999999y\"",
    "\"0s\"",
    "\"1000000h\"",
    "\"{{\"",
    "\"{{seq}}{{\"",
    "\"file:///etc/passwd\"",
    "\"ftp://x\"",
    "\"http://127.0.0.1:9/<x>\"",
    "\"env:PLIMSOLL_FUZZ_UNSET\"",
    "\"file:/nonexistent\"",
    "\"0 0 0 30 2 *\"",
    "\"* * * * * * * *\"",
    "\"\\u0000\"",
    "[]",
    "[[[[[]]]]]",
    "{}",
    "{ a = { b = { c = 1 } } }",
    "\"a\\r\\nb\"",
];

/// One mutation of a valid configuration's text.
fn mutate_config(rng: &mut fastrand::Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for _ in 0..rng.usize(1..5) {
        if lines.is_empty() {
            break;
        }
        let i = rng.usize(..lines.len());
        match rng.u8(..7) {
            // A value replaced by a hostile one.
            0..=2 => {
                if let Some((k, _)) = lines[i].split_once(" = ") {
                    lines[i] = format!("{k} = {}", pick(rng, HOSTILE));
                }
            }
            3 => {
                lines.remove(i);
            }
            4 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            5 => {
                let mut b = lines[i].clone().into_bytes();
                if !b.is_empty() {
                    let j = rng.usize(..b.len());
                    b[j] = *pick(rng, b"[]{}=\"#.,\\ \t0aZ{}");
                }
                lines[i] = String::from_utf8_lossy(&b).into_owned();
            }
            _ => lines.insert(
                i,
                pick(
                    rng,
                    &[
                        "[[probe]]",
                        "[limits]",
                        "rate = 1e12",
                        "[[probe.load.scenarios]]",
                        "[probe.load]",
                        "x = 1",
                        "[[target]]",
                    ],
                )
                .to_string(),
            ),
        }
    }
    lines.join("\n")
}

/// A random TOML-ish document from the grammar's tokens.
fn random_toml(rng: &mut fastrand::Rng) -> String {
    let keys = [
        "probe",
        "target",
        "load",
        "rate",
        "phases",
        "concurrency",
        "name",
        "kind",
        "url",
        "limits",
        "otlp",
        "daemon",
        "report",
        "schedule",
        "every",
        "jitter",
        "duration",
        "burst",
        "steps",
        "request",
        "scenarios",
        "data",
        "file",
        "race",
        "sql",
        "redis",
        "pubsub",
    ];
    let mut out = String::new();
    for _ in 0..rng.usize(..30) {
        match rng.u8(..5) {
            0 => out.push_str(&format!("[{}]\n", pick(rng, &keys))),
            1 => out.push_str(&format!("[[{}]]\n", pick(rng, &keys))),
            2 => out.push_str(&format!("[{}.{}]\n", pick(rng, &keys), pick(rng, &keys))),
            _ => out.push_str(&format!(
                "{} = {}\n",
                pick(rng, &keys),
                if rng.bool() {
                    pick(rng, HOSTILE).to_string()
                } else {
                    pick(
                        rng,
                        &[
                            "\"load\"",
                            "\"race\"",
                            "\"sql\"",
                            "\"http://127.0.0.1:9/\"",
                            "\"1s\"",
                            "5",
                            "[{ duration = \"1s\", rate = 5 }]",
                        ],
                    )
                    .to_string()
                },
            )),
        }
    }
    out
}

#[test]
fn config_loader_survives_mutated_and_random_files() {
    let seeds = seeds();
    let n = fuzz(
        "config loader",
        100_000,
        Duration::from_secs(15),
        Duration::from_secs(2),
        64 << 20,
        |rng| {
            let text = if rng.u8(..4) == 0 {
                random_toml(rng)
            } else {
                let i = rng.usize(..seeds.len());
                mutate_config(rng, &seeds[i])
            };
            let env: Vec<(String, String)> = if rng.u8(..8) == 0 {
                vec![(
                    format!(
                        "PLIMSOLL__{}",
                        pick(
                            rng,
                            &[
                                "PROBE__0__LOAD__CONCURRENCY",
                                "LIMITS__RATE",
                                "PROBE__9__NAME",
                                "OTLP__SAMPLE_RATIO",
                                "PROBE__0__LOAD__PHASES__0__RATE",
                                "DAEMON__LISTEN"
                            ]
                        )
                    ),
                    pick(rng, &["nan", "inf", "1e12", "-1", "x", "0", "5"]).to_string(),
                )]
            } else {
                Vec::new()
            };
            let shown = format!("{env:?}\n{text}");
            (
                shown,
                Box::new(move || {
                    let _ = plimsoll::config::load_str(&text, env);
                }),
            )
        },
    );
    assert!(n > 500, "only {n} cases");
}

// ---------------------------------------------------------------------------------------------
// Template engine.

#[test]
fn templates_compile_and_render_any_text() {
    use plimsoll::config::placeholders;
    use plimsoll::engine::template::{Generators, Template};
    let pieces = [
        "{{",
        "}}",
        "{",
        "}",
        "seq",
        "uuid",
        "x",
        " ",
        "é",
        "\u{0}",
        "{{seq}}",
        "{{ uuid }}",
        "{{}}",
        "}}{{",
        "{{{",
        "}}}",
        "/",
        "\r\n",
        "a",
    ];
    let n = fuzz(
        "template engine",
        500_000,
        Duration::from_secs(10),
        Duration::from_secs(1),
        1 << 20,
        |rng| {
            let text: String = (0..rng.usize(..40)).map(|_| *pick(rng, &pieces)).collect();
            let shown = format!("{text:?}");
            (
                shown,
                Box::new(move || {
                    // The loader's placeholder scan and the engine's compiler must agree on
                    // every text the loader accepts.
                    let names = placeholders(&text);
                    let mut gens = Generators::new(&Default::default());
                    let t = Template::compile(&text, &mut gens);
                    let mut values = Vec::new();
                    gens.fill(&mut values);
                    // Fixed values, so the expected text can be built by hand.
                    for (i, v) in values.iter_mut().enumerate() {
                        *v = format!("<{i}>");
                    }
                    let out = t.render(&values);
                    if let Ok(names) = names {
                        let mut expected = String::new();
                        let mut rest = text.as_str();
                        for name in names {
                            let open = rest.find("{{").unwrap();
                            expected.push_str(&rest[..open]);
                            let i = gens.position(name).unwrap();
                            expected.push_str(&format!("<{i}>"));
                            let after = &rest[open + 2..];
                            rest = &after[after.find("}}").unwrap() + 2..];
                        }
                        expected.push_str(rest);
                        assert_eq!(out, expected);
                    }
                    assert!(out.len() <= 3 * text.len() + 8 * values.len() + 8);
                }),
            )
        },
    );
    assert!(n > 1000, "only {n} cases");
}
