//! The `race` kind: many claimants claim the same resource at the same instant, and exactly
//! one may win (seed 000's vendor race). Double acceptance is a data-integrity failure that no
//! latency graph shows, so this probe counts rounds by their number of winners, optionally
//! asking the database how many claims it really accepted.
//!
//! A round: the setup request creates a fresh resource and its id is captured; every
//! claimant's connection is opened (or kept from the last round) before anything is sent;
//! then all claims are released from one task, which polls the claim futures one after the
//! other, so each claim's first poll writes its pre-serialized request and the sends leave
//! microseconds apart (the measured spread is reported). The claimants' order is shuffled each
//! round so that no claimant is always first.
//!
//! What it must not do: send a claim before every claimant is connected (a claimant still in
//! its handshake would lose for a reason that is not the target's), count a claimant that got
//! no answer as a loser, or emit metrics itself (telemetry reads the result's `race` block).

mod tally;
mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::{ops, ProbeKind, RunContext, Sends};
use crate::config::{
    Config, GeneratorConfig, GuardrailsConfig, ProbeConfig, RaceConfig, TargetConfig, VerifyConfig,
    CLAIMANT_VAR, ID_VAR,
};
use crate::engine::http::{Conn, Endpoint};
use crate::engine::step::Scratch;
use crate::engine::{ErrorKind, Generators, PreparedStep, RequestError};
use crate::report::ProbeResult;
pub use tally::grade;
use tally::{grade_tally, record_micros, Tally};
use wire::{claim_once, exchange, join_all, prepare, ready_conn, timed_out};

/// Rounds kept in `suspect_rounds`: enough to start an investigation, bounded in size.
const MAX_SUSPECT_ROUNDS: usize = 10;

pub struct RaceProbe;

impl ProbeKind for RaceProbe {
    type Config = RaceConfig;

    fn urls(r: &RaceConfig) -> Vec<&str> {
        let mut urls = vec![r.claim.url.as_str()];
        urls.extend(r.setup.as_ref().map(|s| s.url.as_str()));
        urls
    }

    fn cap(g: &GuardrailsConfig, r: &mut RaceConfig, notes: &mut Vec<String>) {
        if let Some(m) = g.max_concurrency {
            let n = r.claimant_count();
            if n > m {
                r.claimants = Some(m.max(2));
                notes.push(format!(
                    "held to guardrails.max_concurrency: {} claimants instead of {n}",
                    m.max(2)
                ));
            }
        }
    }

    fn sends(r: &RaceConfig) -> Sends {
        Sends {
            requests: Some(u64::from(r.claimant_count()) * u64::from(r.round_count())),
            ..Sends::default()
        }
    }

    fn run(
        config: &Config,
        probe: &ProbeConfig,
        race: &RaceConfig,
        ctx: &RunContext,
    ) -> ProbeResult {
        let plan = match RacePlan::compile(race, config.target_of(probe)) {
            Ok(p) => p,
            Err(e) => return ProbeResult::failed(probe, e),
        };
        // One thread is enough: the claims of a round leave from one task by design, and the
        // target, not the prober, is what answers slowly.
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => return ProbeResult::failed(probe, format!("cannot start a runtime: {e}")),
        };
        let started_at = SystemTime::now();
        let t0 = Instant::now();
        let mut tally = Tally::new(plan.claimants, plan.verify.is_some());
        // The tally lives out here so that a round abandoned at stop keeps every earlier one.
        let finished = runtime.block_on(ops::unless_stopped(&ctx.stop, plan.run(&mut tally)));
        match finished {
            Some(Ok(())) => grade_tally(probe, tally, started_at, t0.elapsed()),
            Some(Err(e)) => ProbeResult::failed(probe, e),
            None => {
                tally.stopped_early = true;
                tally.abandoned_round = true;
                grade_tally(probe, tally, started_at, t0.elapsed())
            }
        }
    }
}

/// How a claim's answer is judged.
#[derive(Debug, Clone)]
struct WinRule {
    win_status: Option<Vec<u16>>,
    lose_status: Vec<u16>,
    pointer: Option<(String, serde_json::Value)>,
}

/// What became of one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Won,
    Lost,
    /// No verdict from the target: timeout, connect error, unexpected status, unreadable body.
    Failed(ErrorKind),
}

impl Claim {
    fn name(self) -> &'static str {
        match self {
            Claim::Won => "won",
            Claim::Lost => "lost",
            Claim::Failed(k) => k.as_str(),
        }
    }
}

impl WinRule {
    /// A winning status wins unless the JSON rule says otherwise (then the claim lost); a
    /// winning status whose body cannot be checked is an `expect` error, a status in neither
    /// list a `status` error.
    fn judge(&self, status: u16, body: &[u8]) -> Claim {
        let may_win = match &self.win_status {
            Some(codes) => codes.contains(&status),
            None => (200..300).contains(&status),
        };
        if !may_win {
            return if self.lose_status.contains(&status) {
                Claim::Lost
            } else {
                Claim::Failed(ErrorKind::Status)
            };
        }
        let Some((pointer, want)) = &self.pointer else {
            return Claim::Won;
        };
        let value = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.pointer(pointer).cloned());
        match value {
            Some(v) if &v == want => Claim::Won,
            Some(_) => Claim::Lost,
            None => Claim::Failed(ErrorKind::Expect),
        }
    }
}

/// How a round ended, by the names of `plimsoll_race_rounds_total`'s `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoundOutcome {
    SingleWinner,
    MultipleWinners,
    NoWinner,
}

/// Several winners by either account is a race: the API may tell two vendors they won while
/// the database kept one row, or tell one while it kept two. Otherwise the database, when
/// asked, is the truth about whether the round had a winner at all.
fn round_outcome(api_winners: u64, db_winners: Option<u64>) -> RoundOutcome {
    if api_winners > 1 || db_winners.is_some_and(|d| d > 1) {
        RoundOutcome::MultipleWinners
    } else if db_winners.unwrap_or(api_winners) == 1 {
        RoundOutcome::SingleWinner
    } else {
        RoundOutcome::NoWinner
    }
}

/// The id a setup request created: as text for templates, as a number for the query when
/// the setup answered one (binding text to a bigint column would fail in PostgreSQL).
#[derive(Debug, Clone)]
struct CapturedId {
    text: String,
    number: Option<i64>,
}

fn capture_id(body: &[u8], pointer: &str) -> Result<CapturedId, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the setup answer is not JSON: {e}"))?;
    match doc.pointer(pointer) {
        Some(serde_json::Value::String(s)) => Ok(CapturedId {
            text: s.clone(),
            number: None,
        }),
        Some(serde_json::Value::Number(n)) => Ok(CapturedId {
            text: n.to_string(),
            number: n.as_i64(),
        }),
        Some(_) => Err(format!(
            "the setup answer's {pointer:?} is neither a string nor a number"
        )),
        None => Err(format!("the setup answer has no {pointer:?}")),
    }
}

/// A race ready to run.
struct RacePlan {
    claimants: usize,
    rounds: u64,
    timeout: Duration,
    pause: Duration,
    max_body: u64,
    setup: Option<PreparedStep>,
    capture: String,
    claim: PreparedStep,
    endpoints: Vec<Endpoint>,
    generators: Generators,
    id_slot: usize,
    claimant_slot: usize,
    rule: WinRule,
    verify: Option<VerifyConfig>,
}

impl RacePlan {
    fn compile(race: &RaceConfig, target: Option<&TargetConfig>) -> Result<Self, String> {
        // `{{id}}` and `{{claimant}}` are slots the probe fills itself; declared as sequences
        // so that a JSON value that is only the placeholder is sent as a number.
        let mut declared = BTreeMap::new();
        for name in [ID_VAR, CLAIMANT_VAR] {
            declared.insert(name.to_string(), GeneratorConfig::Sequence { start: 0 });
        }
        let mut generators = Generators::new(&declared);
        let mut endpoints = Vec::new();
        let setup = match &race.setup {
            Some(s) => Some(PreparedStep::compile(
                s,
                target,
                &mut endpoints,
                &mut generators,
            )?),
            None => None,
        };
        let claim = PreparedStep::compile(&race.claim, target, &mut endpoints, &mut generators)?;
        let slot = |name: &str| {
            generators
                .position(name)
                .ok_or_else(|| format!("internal: no slot for {{{{{name}}}}}"))
        };
        Ok(RacePlan {
            claimants: race.claimant_count() as usize,
            rounds: u64::from(race.round_count()),
            timeout: race.timeout.as_duration(),
            pause: race.pause.as_duration(),
            max_body: race.max_body_bytes,
            setup,
            capture: race.capture.clone(),
            claim,
            id_slot: slot(ID_VAR)?,
            claimant_slot: slot(CLAIMANT_VAR)?,
            endpoints,
            generators,
            rule: WinRule {
                win_status: race.win_status.clone(),
                lose_status: race.lose_status.clone(),
                pointer: race.win_pointer.clone().zip(race.win_equals.clone()),
            },
            verify: race.verify.clone(),
        })
    }

    /// Runs the rounds into `tally`. The caller races this against the stop flag and drops it
    /// when the run is stopped, so it never looks at the flag itself.
    async fn run(&self, tally: &mut Tally) -> Result<(), String> {
        let mut addrs = Vec::new();
        for e in &self.endpoints {
            match tokio::time::timeout(self.timeout, e.resolve()).await {
                Ok(Ok(a)) => addrs.push(a),
                Ok(Err(err)) => return Err(err.message),
                Err(_) => return Err(format!("resolving {} timed out", e.base.host)),
            }
        }
        let pool = match &self.verify {
            Some(v) => Some(connect_pool(v).await?),
            None => None,
        };
        let mut setup_conn: Option<Conn> = None;
        let mut conns: Vec<Option<Conn>> = (0..self.claimants).map(|_| None).collect();
        let mut order: Vec<usize> = (0..self.claimants).collect();
        let mut values = Vec::new();
        let mut scratch = Scratch::default();
        for round in 0..self.rounds {
            if round > 0 && !self.pause.is_zero() {
                tokio::time::sleep(self.pause).await;
            }
            self.generators.fill(&mut values);
            let id = match &self.setup {
                None => None,
                Some(step) => match self
                    .setup_round(step, &addrs, &mut setup_conn, &values, &mut scratch)
                    .await
                {
                    Ok(id) => Some(id),
                    Err(e) => {
                        tally.setup_failures += 1;
                        tally.sample(e.kind, e.message);
                        continue;
                    }
                },
            };
            if let Some(id) = &id {
                values[self.id_slot] = id.text.clone();
            }

            // Every claimant connects (or checks its kept connection) before anything is sent.
            let ep = &self.endpoints[self.claim.endpoint];
            let deadline = tokio::time::Instant::now() + self.timeout;
            let pending: Vec<_> = conns
                .iter_mut()
                .map(|slot| {
                    ready_conn(
                        slot.take(),
                        ep,
                        &addrs[self.claim.endpoint],
                        deadline,
                        self.timeout,
                    )
                })
                .collect();
            let mut ready = Vec::with_capacity(self.claimants);
            for (claimant, r) in join_all(pending).await.into_iter().enumerate() {
                let prepared = r.and_then(|conn| {
                    values[self.claimant_slot] = claimant.to_string();
                    let req = prepare(&self.claim, conn.is_h2(), &values, &mut scratch)?;
                    Ok((conn, req))
                });
                match prepared {
                    Ok(x) => ready.push(Some(x)),
                    Err(e) => {
                        tally.claim(Claim::Failed(e.kind), Some(e.message));
                        ready.push(None);
                    }
                }
            }

            fastrand::shuffle(&mut order);
            let deadline = tokio::time::Instant::now() + self.timeout;
            let claims: Vec<_> = order
                .iter()
                .filter_map(|&i| {
                    let (conn, req) = ready[i].take()?;
                    Some(claim_once(
                        i,
                        conn,
                        req,
                        self.max_body,
                        deadline,
                        self.timeout,
                    ))
                })
                .collect();
            // Unconstrained: tokio's cooperative budget would otherwise make the later
            // claimants of a large round wait a scheduler turn before they may write.
            let done = tokio::task::unconstrained(join_all(claims)).await;

            let mut api_winners = 0;
            let first_sent = done.iter().map(|d| d.sent).min();
            let last_sent = done.iter().map(|d| d.sent).max();
            let last_answer = done.iter().map(|d| d.answered).max();
            for d in done {
                let (claim, message) = match &d.result {
                    Ok((resp, body)) => (self.rule.judge(resp.status, body), None),
                    Err(e) => (Claim::Failed(e.kind), Some(e.message.clone())),
                };
                if claim == Claim::Won {
                    api_winners += 1;
                }
                let message = message.or_else(|| match (&d.result, claim) {
                    (Ok((resp, body)), Claim::Failed(_)) => Some(format!(
                        "status {}: {}",
                        resp.status,
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    )),
                    _ => None,
                });
                tally.claim(claim, message);
                conns[d.claimant] = d.conn;
            }
            if let (Some(first), Some(last), Some(end)) = (first_sent, last_sent, last_answer) {
                record_micros(&mut tally.spread, last - first);
                record_micros(&mut tally.race_time, end - first);
            }

            let db_winners = match (&pool, &self.verify, &id) {
                (Some(pool), Some(v), Some(id)) => match count_accepted(pool, v, id).await {
                    Ok(n) => Some(n),
                    Err(e) => {
                        tally.verify_errors += 1;
                        tally.sample(ErrorKind::Expect, format!("verification query: {e}"));
                        None
                    }
                },
                _ => None,
            };
            tally.round(round, id.map(|i| i.text), api_winners, db_winners);
        }
        Ok(())
    }

    /// Sends the setup request and captures the id from its answer.
    async fn setup_round(
        &self,
        step: &PreparedStep,
        addrs: &[Vec<SocketAddr>],
        conn: &mut Option<Conn>,
        values: &[String],
        scratch: &mut Scratch,
    ) -> Result<CapturedId, RequestError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let ep = &self.endpoints[step.endpoint];
        let mut c = ready_conn(
            conn.take(),
            ep,
            &addrs[step.endpoint],
            deadline,
            self.timeout,
        )
        .await?;
        let req = prepare(step, c.is_h2(), values, scratch)?;
        let mut body = Vec::new();
        let resp =
            tokio::time::timeout_at(deadline, exchange(&mut c, req, self.max_body, &mut body))
                .await
                .map_err(|_| timed_out(self.timeout))??;
        if resp.reusable {
            *conn = Some(c);
        }
        let setup_error = |m: String| RequestError::new(ErrorKind::Expect, format!("setup: {m}"));
        if !step.accepts(resp.status) {
            return Err(RequestError::new(
                ErrorKind::Status,
                format!("setup answered {}", resp.status),
            ));
        }
        capture_id(&body, &self.capture).map_err(setup_error)
    }
}

async fn connect_pool(v: &VerifyConfig) -> Result<PgPool, String> {
    // One connection: the query runs between rounds, never concurrently with itself.
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(v.timeout.as_duration())
        .connect(v.database_url.expose())
        .await
        .map_err(|e| format!("cannot connect to the verification database: {e}"))
}

async fn count_accepted(pool: &PgPool, v: &VerifyConfig, id: &CapturedId) -> Result<u64, String> {
    let q = sqlx::query_scalar::<_, i64>(&v.query);
    let q = match id.number {
        Some(n) => q.bind(n),
        None => q.bind(id.text.clone()),
    };
    let n = tokio::time::timeout(v.timeout.as_duration(), q.fetch_one(pool))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests;
